"""Heap allocations in a callgrind profile, counted from its call graph.

Callgrind records how often every function called every other, so the calls into the allocator's entry
points are the process's allocations, exactly, in the same run whose instructions are counted. The worker's
allocator is jemalloc with prefixed symbols (tikv-jemallocator: `_rjem_malloc`, `_rjem_mallocx`, ...); C
code linked into it (and glibc itself) still calls glibc's `malloc`, so both are counted.

scripts/instructions.sh runs callgrind with `--separate-callers<N>=` for these entry points, so each one
appears once per call chain (`_rjem_malloc'caller'caller's caller'...`). An allocation is charged to the
innermost frame of the worker's own crate on its chain (`clerk_audit::`), and, separately, to the crate of
the innermost frame outside the standard library: the first says what the worker's code made allocate, the
second whose code it was.

Usage: callgrind_allocs.py PROFILE JOBS [TOP]
       callgrind_allocs.py --self-test   (scripts/test.sh runs it)
Prints allocations and reallocations per scan (the process's start included, spread over the jobs, as the
instruction count is), then the TOP functions of the worker and the TOP crates by allocations per scan.
"""

import collections
import re
import sys

ALLOCATE = {"_rjem_malloc", "_rjem_mallocx", "_rjem_calloc", "malloc", "calloc"}
REALLOCATE = {"_rjem_realloc", "_rjem_rallocx", "realloc"}
STANDARD = {"alloc", "core", "std", "hashbrown"}

# `fn=(12) name`, `fn=(12)` (name given before), `cfn=...` likewise; `calls=N target-position`.
NAMED = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")
CALLS = re.compile(r"^calls=(\d+)")
# The first path segment of a demangled name: `<&mut serde_json::de::X as ...>::f` -> serde_json.
CRATE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::")
OWN = "clerk_audit::"


def frames(context):
    """`f'caller'caller's caller` -> [f, caller, ...]; callgrind's recursion marks (`'2`) are dropped."""
    return [frame for frame in context.split("'") if frame and not frame.isdigit()]


def crate_of(frame):
    found = CRATE.search(frame)
    return found.group(1) if found else frame


def count(path):
    names = {}
    callee = None
    calls_into = collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as profile:
        for line in profile:
            named = NAMED.match(line)
            if named:
                kind, ident, name = named.groups()
                if name is not None:
                    names[ident] = name.strip()
                if kind == "cfn":
                    callee = names.get(ident, ident)
                continue
            calls = CALLS.match(line)
            if calls and callee is not None:
                calls_into[callee] += int(calls.group(1))
                callee = None
    return calls_into


def summarize(calls_into):
    """(allocations, reallocations, by the worker's function, by crate) of `count`'s calls."""
    allocations = reallocations = 0
    by_own = collections.Counter()
    by_crate = collections.Counter()
    for context, n in calls_into.items():
        chain = frames(context)
        if chain[0] in REALLOCATE:
            reallocations += n
        if chain[0] not in ALLOCATE:
            continue
        allocations += n
        callers = chain[1:]
        own = next((frame for frame in callers if OWN in frame), None)
        by_own[own or "(no frame of the worker's within the recorded callers)"] += n
        library = next((frame for frame in callers if crate_of(frame) not in STANDARD), None)
        by_crate[crate_of(library) if library else "(standard library only)"] += n
    return allocations, reallocations, by_own, by_crate


SAMPLE = """events: Ir
fn=(1) clerk_audit::fetch::gather
cfn=(2) _rjem_malloc'hyper::proto::encode'clerk_audit::fetch::gather
calls=3 0
0 100
cfn=(3) _rjem_rallocx'alloc::raw_vec::finish_grow'clerk_audit::audit::evaluate
calls=2 0
0 50
fn=(4) std::rt::lang_start
cfn=(2)
calls=5 0
0 10
cfn=(5) malloc'alloc::raw_vec::finish_grow'<alloc::string::String as core::fmt::Write>::write_str'2
calls=1 0
0 1
cfn=(6) clerk_audit::not_an_allocation
calls=7 0
0 1
"""


def self_test():
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".out") as profile:
        profile.write(SAMPLE)
        profile.flush()
        allocations, reallocations, by_own, by_crate = summarize(count(profile.name))
    assert (allocations, reallocations) == (9, 2), (allocations, reallocations)
    assert by_own == {"clerk_audit::fetch::gather": 8, "(no frame of the worker's within the recorded callers)": 1}, by_own
    assert by_crate == {"hyper": 8, "(standard library only)": 1}, by_crate
    print("callgrind_allocs.py: self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, jobs = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    allocations, reallocations, by_own, by_crate = summarize(count(path))
    print(f"allocations:            {allocations}")
    print(f"allocations per scan:   {allocations / jobs:.0f} (+ {reallocations / jobs:.0f} reallocations)")
    if top > 0:
        print(f"allocations per scan by the innermost function of the worker's on the call chain (top {top}):")
        for frame, n in by_own.most_common(top):
            print(f"  {n / jobs:8.1f}  {frame if len(frame) <= 150 else frame[:147] + '...'}")
        print(f"allocations per scan by the crate of the innermost frame outside std (top {top}):")
        for crate, n in by_crate.most_common(top):
            print(f"  {n / jobs:8.1f}  {crate}")


if __name__ == "__main__":
    main()
