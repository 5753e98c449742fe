//! Parse trees (tree-sitter) for the files the handler analysis reads: JavaScript, TypeScript, TSX,
//! Python and Go.
//!
//! Bounded: a file is parsed only when the line-level pass found something in it (a handler
//! candidate, a router call, a mount, a settings class), each parse stops after a budget of parser
//! operations proportional to the file's size ([`budget`]; the progress callback cancels it and the file
//! is then read by the line-level pass alone). The budget counts operations, not time, so a busy machine
//! never changes what a scan finds: the same tree always gives the same artifact. Ordinary source takes
//! about one operation per byte; the budget allows eight plus a constant,
//! and every walk over a tree is iterative (a [`tree_sitter::TreeCursor`], never recursion), so deeply
//! nested input cannot exhaust the stack. tree-sitter itself recovers from syntax errors: a broken file
//! still gives a tree with `ERROR` nodes.

use tree_sitter::{Language, Node, ParseOptions, ParseState, Parser, Tree};

/// tree-sitter calls the progress callback once every this many parser operations.
const OPERATIONS_PER_CALLBACK: u64 = 100;
/// Parser operations allowed per byte of input, and on top of that for any file.
const OPERATIONS_PER_BYTE: u64 = 8;
const BASE_OPERATIONS: u64 = 100_000;

/// Progress callbacks a parse of `len` bytes may take before it is abandoned.
pub(crate) fn budget(len: usize) -> u64 {
    (BASE_OPERATIONS + OPERATIONS_PER_BYTE * len as u64) / OPERATIONS_PER_CALLBACK
}

/// Which grammar reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grammar {
    JavaScript,
    TypeScript,
    Tsx,
    Python,
    Go,
}

impl Grammar {
    pub(crate) fn of(path: &str) -> Option<Grammar> {
        let ext = path.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "js" | "jsx" | "mjs" | "cjs" => Some(Grammar::JavaScript),
            "ts" | "mts" | "cts" => Some(Grammar::TypeScript),
            "tsx" => Some(Grammar::Tsx),
            "py" => Some(Grammar::Python),
            "go" => Some(Grammar::Go),
            _ => None,
        }
    }

    fn language(self) -> Language {
        match self {
            Grammar::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Grammar::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Grammar::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Grammar::Python => tree_sitter_python::LANGUAGE.into(),
            Grammar::Go => tree_sitter_go::LANGUAGE.into(),
        }
    }
}

/// Parses `text`; `None` when the grammar cannot be loaded or the budget ran out.
pub(crate) fn parse(grammar: Grammar, text: &str) -> Option<Tree> {
    parse_within(grammar, text, budget(text.len()))
}

/// Parses `text` unless it takes more than `callbacks` progress callbacks.
pub(crate) fn parse_within(grammar: Grammar, text: &str, callbacks: u64) -> Option<Tree> {
    let mut parser = Parser::new();
    parser.set_language(&grammar.language()).ok()?;
    let mut taken = 0u64;
    // Returning true from the callback cancels the parse.
    let mut over_budget = |_: &ParseState| {
        taken += 1;
        taken > callbacks
    };
    let options = ParseOptions::new().progress_callback(&mut over_budget);
    let bytes = text.as_bytes();
    parser.parse_with_options(&mut |offset, _| bytes.get(offset..).unwrap_or_default(), None, Some(options))
}

/// The node's source text ("" when the range is not on a char boundary).
pub(crate) fn text_of<'t>(node: Node<'_>, text: &'t str) -> &'t str {
    text.get(node.byte_range()).unwrap_or("")
}

/// 1-based line of the node's start.
pub(crate) fn line_of(node: Node<'_>) -> u32 {
    u32::try_from(node.start_position().row + 1).unwrap_or(u32::MAX)
}

/// Visits every node of the tree in document order, without recursion. `visit` returns whether to
/// descend into the node's children.
pub(crate) fn walk(tree: &Tree, mut visit: impl FnMut(Node<'_>) -> bool) {
    let mut cursor = tree.walk();
    loop {
        let descend = visit(cursor.node());
        if descend && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

/// The nearest ancestor (or the node itself) of one of `kinds`.
pub(crate) fn ancestor<'a>(node: Node<'a>, kinds: &[&str]) -> Option<Node<'a>> {
    let mut cur = Some(node);
    while let Some(n) = cur {
        if kinds.contains(&n.kind()) {
            return Some(n);
        }
        cur = n.parent();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_language() {
        for (g, src) in [
            (Grammar::JavaScript, "const a = require('x'); app.post('/w', h)"),
            (Grammar::TypeScript, "@Controller('w') export class C { @Post('x') f(a: string) {} }"),
            (Grammar::Tsx, "export default function P() { return <div/> }"),
            (Grammar::Python, "@router.post('/x')\nasync def f(r):\n    return 1\n"),
            (Grammar::Go, "package m\nfunc (h *H) F(c *gin.Context) {}\n"),
        ] {
            let tree = parse(g, src).expect("parses");
            assert!(!tree.root_node().has_error(), "{g:?}: {}", tree.root_node().to_sexp());
        }
    }

    #[test]
    fn deep_nesting_is_walked_without_recursion() {
        let depth = 50_000;
        let src = format!("x = {}1{}", "[".repeat(depth), "]".repeat(depth));
        // The parse may give up within its budget; when it finishes, walking the tree must not overflow.
        if let Some(tree) = parse(Grammar::Python, &src) {
            let mut n = 0usize;
            walk(&tree, |_| {
                n += 1;
                true
            });
            assert!(n > depth);
        }
        let js = format!("f({}0{})", "(".repeat(depth), ")".repeat(depth));
        if let Some(tree) = parse(Grammar::JavaScript, &js) {
            let mut n = 0usize;
            walk(&tree, |_| {
                n += 1;
                true
            });
            assert!(n > 0);
        }
    }

    #[test]
    fn a_parse_over_budget_is_abandoned() {
        let src = "a = 1 + ".repeat(20_000) + "1";
        assert!(parse_within(Grammar::Python, &src, 0).is_none());
        assert!(parse_within(Grammar::Python, &src, budget(src.len())).is_some(), "ordinary code fits the budget");
    }

    #[test]
    fn the_budget_is_counted_in_operations_and_the_same_every_time() {
        // Broken input that keeps error recovery busy: the outcome depends on the input alone.
        let src = "def f(:\n  ((((( [ {{ ".repeat(2_000);
        let outcome = |_| parse(Grammar::Python, &src).map(|t| t.root_node().to_sexp().len());
        let first = outcome(0);
        assert!((1..4).all(|i| outcome(i) == first));
    }
}
