//! What the parse tree of a file adds to the line-level pass (see [`crate::syntax`] for the bounds).
//!
//! - **Verification sites**: every signature check (`.verify(`, `.Verify(`, Clerk's `verifyWebhook(`)
//!   with the span of the function around it, whether it checks a re-serialised body
//!   (`JSON.stringify(...)`, `json.dumps(...)`, `json.Marshal(...)`, directly or through a local
//!   name), and whether its failure branch (the `catch`/`except` clause of the `try` around it, Go's
//!   `if err != nil { ... }` after it) still answers 2xx: an explicit 2xx status (`res.status(200)`,
//!   `sendStatus(204)`, `Response(status_code=200)`, `http.StatusOK`...), or a success-shaped answer
//!   with no status and no error (`res.json(...)`, returning an object/dict/string, which frameworks send
//!   as 200), and no `throw`/`raise`/4xx/5xx/`next(err)` in the branch.
//! - **NestJS controllers**: `@Controller('x')` classes and their `@Post('y')` / `@All('y')` methods.
//! - **Constructor parameters**: a function whose parameter is handed to a verifier constructor
//!   (`func NewHandler(secret string) { svix.NewWebhook(secret) }`), and calls that pass values
//!   (`handlers.NewHandler(cfg.ClerkWebhookSecret)`), so the secret can be followed to the caller.
//! - **Configuration fields**: pydantic-settings fields (`CLERK_WEBHOOK_SECRET: SecretStr` in a
//!   `BaseSettings` subclass reads env var `CLERK_WEBHOOK_SECRET`, with the class's `env_prefix`) and Go
//!   struct literal fields filled from a config loader (`ClerkWebhookSecret: mustGet("X")`).
//! - **Go router parameters**: a function that registers routes on a router it receives
//!   (`func Register(api *gin.RouterGroup) { api.Group("/webhooks").POST(...) }`) and the calls that
//!   pass it a group with a literal prefix (`routes.Register(r.Group("/api"))`), so prefixes are joined
//!   across packages. chi sub-routers count too: `r.Route("/api", func(api chi.Router) {...})` gives
//!   `api` the prefix, and `r.Mount("/webhooks", webhooks.Routes())` gives the router that `Routes`
//!   makes itself (a root router of its own) the mount's prefix.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use tree_sitter::{Node, Tree};

use super::{SecretExpr, classify, join_route, re, string_literal};
use crate::syntax::{self, Grammar, ancestor, line_of, text_of};

/// A signature check found in the tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VerifySite {
    /// Byte span of the function around the check (the whole file at top level).
    pub start: usize,
    pub end: usize,
    pub reserialized: bool,
    pub acks_failure: bool,
}

/// A NestJS controller method serving POST (or all methods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NestRoute {
    pub start: usize,
    pub end: usize,
    /// Line of the method's name (the handler) and of its first decorator (the registration).
    pub line: u32,
    pub decorator_line: u32,
    pub name: String,
    pub route: String,
}

/// A Go registration made on a router received as a parameter of `func_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamRoute {
    pub func_name: String,
    pub param: usize,
    /// Line of the registration call (matches the line-level pass's registration).
    pub line: u32,
}

/// The `param` of a [`ParamRoute`] and the `arg` of a [`GroupArg`] that stand for a router the function
/// makes itself (`r := chi.NewRouter()`) and a caller mounts under a prefix
/// (`r.Mount("/webhooks", webhooks.Routes())`).
pub(crate) const OWN_ROUTER: usize = usize::MAX;

/// A call passing a router group with a known prefix as argument `arg` of `callee`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupArg {
    pub callee: String,
    pub arg: usize,
    pub prefix: String,
}

/// A call that may hand a secret on: the callee's last name, the argument texts, and the enclosing
/// function with its parameter names (when the call is inside a named function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    pub callee: String,
    pub args: Vec<String>,
    pub caller: Option<(String, Vec<String>)>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AstFacts {
    pub verify_sites: Vec<VerifySite>,
    pub nest_routes: Vec<NestRoute>,
    /// (function, parameter index, parameter name) handed to a verifier constructor.
    pub ctor_params: Vec<(String, usize, String)>,
    /// Calls passing something secret-like or a parameter of the enclosing function, for following
    /// constructor parameters to what the callers pass (through wrappers too).
    pub calls: Vec<Call>,
    /// Configuration fields: name -> env var / literal.
    pub assigns: Vec<(String, SecretExpr)>,
    pub param_routes: Vec<ParamRoute>,
    pub group_args: Vec<GroupArg>,
}

/// Calls recorded per file: bounded work on generated code.
const MAX_CALLS: usize = 512;
/// How far up from a call its enclosing function is looked for (deeply nested input stays linear).
const MAX_ENCLOSING_STEPS: usize = 64;

/// The nearest ancestor of one of `kinds` within `steps` parents.
fn ancestor_within<'a>(node: Node<'a>, kinds: &[&str], steps: usize) -> Option<Node<'a>> {
    let mut cur = Some(node);
    for _ in 0..=steps {
        let n = cur?;
        if kinds.contains(&n.kind()) {
            return Some(n);
        }
        cur = n.parent();
    }
    None
}

static REJSON: LazyLock<Regex> = LazyLock::new(|| re(r"JSON\.stringify\s*\(|json\.dumps\s*\(|json\.Marshal\s*\("));
static OK_STATUS: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?:status|sendStatus|code|WriteHeader|Status|JSON|String|NoContent|AbortWithStatus)\s*\(\s*20[0-4]\b",
        r"|status(?:_code)?\s*[=:]\s*20[0-4]\b",
        r"|http\.Status(?:OK|NoContent|Accepted|Created)\b|status\.HTTP_20[0-4]",
        r"|,\s*20[0-4]\s*\)?\s*$",
    ))
});
static ERROR_ANSWER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"\b[45]\d\d\b|\bthrow\b|\braise\b|\babort\s*\(|HTTPException|Unauthorized|BadRequest|Forbidden",
        r"|InternalServerError|http\.Error\s*\(|\bpanic\s*\(|\bnext\s*\(\s*\w+\s*\)|return\s+(?:nil\s*,\s*)?err\b",
        r"|Errorf\s*\(|reject\s*\(",
    ))
});
static IMPLICIT_OK: LazyLock<Regex> = LazyLock::new(|| {
    re(r#"\bres\.(?:json|send|end)\s*\(|\breturn\s*[\{"']|\b(?:HttpResponse|JsonResponse)\s*\([^)]*\)\s*$"#)
});
static ENV_PREFIX: LazyLock<Regex> = LazyLock::new(|| re(r#"env_prefix\s*[=:]\s*["']([A-Za-z0-9_]*)["']"#));
static SECRETISH: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)secret|webhook|signing|whsec|cfg|conf|setting|env"));

/// The verifier constructors, by the last segment of the callee (`new Webhook(`, `Webhook(`,
/// `svix.NewWebhook(`, `standardwebhooks.NewWebhookRaw(`).
const CTORS: &[&str] = &["Webhook", "NewWebhook", "NewWebhookRaw"];

/// Reads the tree of one file.
pub(crate) fn facts(grammar: Grammar, tree: &Tree, text: &str) -> AstFacts {
    let mut out = AstFacts::default();
    syntax::walk(tree, |node| {
        match (grammar, node.kind()) {
            (Grammar::Go, "call_expression") | (Grammar::Python, "call") | (_, "call_expression") => {
                call(grammar, node, text, &mut out);
            }
            (Grammar::TypeScript | Grammar::Tsx, "class_declaration") => nest_controller(node, text, &mut out),
            (Grammar::Python, "class_definition") => settings_class(node, text, &mut out),
            (Grammar::Go, "keyed_element") => go_keyed_field(node, text, &mut out),
            (Grammar::Go, "function_declaration" | "method_declaration") => go_router_params(node, text, &mut out),
            _ => {}
        }
        true
    });
    out.calls.truncate(MAX_CALLS);
    out
}

fn function_kinds(grammar: Grammar) -> &'static [&'static str] {
    match grammar {
        Grammar::Python => &["function_definition"],
        Grammar::Go => &["function_declaration", "method_declaration", "func_literal"],
        _ => &[
            "function_declaration",
            "function_expression",
            "arrow_function",
            "method_definition",
            "generator_function_declaration",
        ],
    }
}

fn call(grammar: Grammar, node: Node<'_>, text: &str, out: &mut AstFacts) {
    let Some(func) = node.child_by_field_name("function") else { return };
    let Some(args) = node.child_by_field_name("arguments") else { return };
    let callee = text_of(func, text);
    let last = callee.rsplit('.').next().unwrap_or(callee);
    let arg_nodes: Vec<Node<'_>> = {
        let mut c = args.walk();
        args.named_children(&mut c).filter(|n| n.kind() != "comment").collect()
    };
    let verify = matches!(last, "verify" | "Verify") && callee.contains('.') || last == "verifyWebhook";
    if verify {
        out.verify_sites.push(verify_site(grammar, node, &arg_nodes, text));
    }
    // A verifier constructor fed a parameter of the enclosing function.
    if CTORS.contains(&last)
        && let Some(first) = arg_nodes.first()
        && let Some(f) = ancestor(node, function_kinds(grammar))
        && let Some(name) = function_name(f, text)
    {
        let arg = text_of(*first, text).trim();
        if let Some(i) = params(grammar, f, text).iter().position(|p| p == arg) {
            out.ctor_params.push((name, i, arg.to_owned()));
        }
    }
    if out.calls.len() < MAX_CALLS && !arg_nodes.is_empty() {
        let args: Vec<String> = arg_nodes.iter().map(|a| syntax_head(text_of(*a, text))).collect();
        let plain = |a: &String| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let caller = if args.iter().any(plain) {
            ancestor_within(node, function_kinds(grammar), MAX_ENCLOSING_STEPS)
                .and_then(|f| Some((function_name(f, text)?, params(grammar, f, text))))
        } else {
            None
        };
        let forwards = caller.as_ref().is_some_and(|(_, ps)| args.iter().any(|a| ps.contains(a)));
        if forwards || args.iter().any(|a| SECRETISH.is_match(a)) {
            out.calls.push(Call { callee: last.to_owned(), args, caller });
        }
    }
}

fn syntax_head(s: &str) -> String {
    crate::text::head(s, 256).to_owned()
}

fn verify_site(grammar: Grammar, call: Node<'_>, args: &[Node<'_>], text: &str) -> VerifySite {
    let func = ancestor(call, function_kinds(grammar));
    let (start, end) = func.map_or((0, text.len()), |f| (f.start_byte(), f.end_byte()));
    let scope = text.get(start..end).unwrap_or("");
    let payload = args.first().map_or("", |a| text_of(*a, text)).trim();
    let reserialized = REJSON.is_match(payload) || {
        let ident = !payload.is_empty() && payload.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        ident && {
            let pat = format!(
                r"\b{}\b(?:\s*,\s*\w+)?\s*(?::[^=\n]+)?:?=\s*(?:await\s+)?(?:{})",
                regex::escape(payload),
                REJSON.as_str()
            );
            Regex::new(&pat).is_ok_and(|r| r.is_match(scope))
        }
    };
    let branch = failure_branch(grammar, call);
    let acks_failure = branch.is_some_and(|b| acks(&without_comments(b, text)));
    VerifySite { start, end, reserialized, acks_failure }
}

/// The code that runs when the check at `call` fails.
fn failure_branch<'a>(grammar: Grammar, call: Node<'a>) -> Option<Node<'a>> {
    match grammar {
        Grammar::Go => {
            // `if err := wh.Verify(...); err != nil { ... }` or `err = wh.Verify(...)` then `if err != nil {`.
            if let Some(ifs) = ancestor(call, &["if_statement"])
                && ifs.child_by_field_name("consequence").is_some_and(|c| !contains(c, call))
            {
                return ifs.child_by_field_name("consequence");
            }
            let stmt = ancestor(call, &["short_var_declaration", "assignment_statement"])?;
            let next = stmt.next_named_sibling()?;
            (next.kind() == "if_statement").then(|| next.child_by_field_name("consequence")).flatten()
        }
        Grammar::Python => {
            let t = ancestor(call, &["try_statement"])?;
            let mut c = t.walk();
            t.named_children(&mut c).find(|n| n.kind() == "except_clause")
        }
        _ => {
            let t = ancestor(call, &["try_statement"])?;
            t.child_by_field_name("handler")
        }
    }
}

/// The node's text with its comments blanked: a comment saying "answers 200" answers nothing.
fn without_comments(node: Node<'_>, text: &str) -> String {
    let (start, end) = (node.start_byte(), node.end_byte());
    let mut out = text.get(start..end).unwrap_or("").to_owned();
    let mut cursor = node.walk();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if n.kind() == "comment" {
            let (s, e) = (n.start_byte() - start, n.end_byte() - start);
            if out.is_char_boundary(s) && out.is_char_boundary(e) {
                out.replace_range(s..e, &" ".repeat(e - s));
            }
            continue;
        }
        stack.extend(n.children(&mut cursor));
    }
    out
}

fn contains(outer: Node<'_>, inner: Node<'_>) -> bool {
    outer.start_byte() <= inner.start_byte() && inner.end_byte() <= outer.end_byte()
}

/// Whether a failure branch answers 2xx (see the module docs).
pub(crate) fn acks(branch: &str) -> bool {
    if ERROR_ANSWER.is_match(branch) {
        return false;
    }
    branch.lines().any(|l| OK_STATUS.is_match(l.trim_end_matches([';', ' '])) || IMPLICIT_OK.is_match(l.trim()))
}

fn function_name(f: Node<'_>, text: &str) -> Option<String> {
    let name = f.child_by_field_name("name").map(|n| text_of(n, text).to_owned());
    name.or_else(|| {
        // `const NewHandler = (secret) => ...`
        let decl = f.parent().filter(|p| p.kind() == "variable_declarator")?;
        decl.child_by_field_name("name").map(|n| text_of(n, text).to_owned())
    })
}

/// Parameter names in order (Go groups `a, b string` give both names).
fn params(grammar: Grammar, f: Node<'_>, text: &str) -> Vec<String> {
    let Some(list) = f.child_by_field_name("parameters") else { return Vec::new() };
    let mut out = Vec::new();
    let mut c = list.walk();
    for p in list.named_children(&mut c) {
        match grammar {
            Grammar::Go => {
                let mut pc = p.walk();
                for n in p.children_by_field_name("name", &mut pc) {
                    out.push(text_of(n, text).to_owned());
                }
            }
            Grammar::Python => {
                let n = if p.kind() == "identifier" { Some(p) } else { p.named_child(0) };
                if let Some(n) = n {
                    out.push(text_of(n, text).to_owned());
                }
            }
            _ => {
                let n = p.child_by_field_name("pattern").unwrap_or(p);
                let t = text_of(n, text);
                out.push(t.split(['=', ':']).next().unwrap_or(t).trim().to_owned());
            }
        }
    }
    out
}

/// `@Controller('webhooks') class C { @Post('clerk') m() {} }`.
fn nest_controller(class: Node<'_>, text: &str, out: &mut AstFacts) {
    let decorators = |n: Node<'_>| -> Vec<String> {
        let mut c = n.walk();
        n.children(&mut c).filter(|d| d.kind() == "decorator").map(|d| text_of(d, text).to_owned()).collect()
    };
    let mut decos = decorators(class);
    if let Some(p) = class.parent().filter(|p| p.kind() == "export_statement") {
        decos.extend(decorators(p));
    }
    let Some(prefix) = decos.iter().find_map(|d| decorator_arg(d, "Controller")) else { return };
    let Some(body) = class.child_by_field_name("body") else { return };
    let mut c = body.walk();
    let members: Vec<Node<'_>> = body.named_children(&mut c).collect();
    let mut pending: Vec<String> = Vec::new();
    let mut pending_line: Option<u32> = None;
    for m in members {
        match m.kind() {
            "decorator" => {
                pending.push(text_of(m, text).to_owned());
                pending_line.get_or_insert(line_of(m));
            }
            "method_definition" => {
                let mut ds = decorators(m);
                ds.append(&mut pending);
                let route = ds.iter().find_map(|d| decorator_arg(d, "Post").or_else(|| decorator_arg(d, "All")));
                if let (Some(route), Some(name)) = (route, m.child_by_field_name("name")) {
                    out.nest_routes.push(NestRoute {
                        start: m.start_byte(),
                        end: m.end_byte(),
                        line: line_of(name),
                        decorator_line: pending_line.unwrap_or_else(|| line_of(m)).min(line_of(m)),
                        name: text_of(name, text).to_owned(),
                        route: join_route(&prefix, &route),
                    });
                }
                pending_line = None;
            }
            _ => {
                pending.clear();
                pending_line = None;
            }
        }
    }
}

/// `@Post('clerk')` -> `clerk`; `@Post()` -> ``; other decorators -> None.
fn decorator_arg(deco: &str, name: &str) -> Option<String> {
    let rest = deco.strip_prefix('@')?.trim_start().strip_prefix(name)?.trim_start().strip_prefix('(')?;
    let inner = rest.rsplit_once(')').map_or(rest, |(i, _)| i).trim();
    if inner.is_empty() {
        return Some(String::new());
    }
    // `@Controller({ path: 'webhooks' })`.
    let lit = inner.split_once("path:").map_or(inner, |(_, p)| p.split([',', '}']).next().unwrap_or(p));
    string_literal(lit.trim())
}

/// `class Settings(BaseSettings): CLERK_WEBHOOK_SECRET: SecretStr`.
fn settings_class(class: Node<'_>, text: &str, out: &mut AstFacts) {
    let bases = class.child_by_field_name("superclasses").map_or("", |b| text_of(b, text));
    if !bases.contains("BaseSettings") {
        return;
    }
    let Some(body) = class.child_by_field_name("body") else { return };
    let prefix = ENV_PREFIX
        .captures(text_of(body, text))
        .and_then(|c| c.get(1))
        .map_or(String::new(), |m| m.as_str().to_ascii_uppercase());
    let mut c = body.walk();
    for stmt in body.named_children(&mut c) {
        let Some(a) = stmt.named_child(0).filter(|a| a.kind() == "assignment") else { continue };
        if a.child_by_field_name("type").is_none() {
            continue;
        }
        let Some(left) = a.child_by_field_name("left").filter(|l| l.kind() == "identifier") else { continue };
        let field = text_of(left, text);
        if field == "model_config" {
            continue;
        }
        out.assigns.push((field.to_owned(), SecretExpr::Env(format!("{prefix}{}", field.to_ascii_uppercase()))));
    }
}

/// `ClerkWebhookSecret: mustGet("CLERK_WEBHOOK_SECRET")` in a Go composite literal.
fn go_keyed_field(node: Node<'_>, text: &str, out: &mut AstFacts) {
    let mut c = node.walk();
    let parts: Vec<Node<'_>> = node.named_children(&mut c).collect();
    let [key, value] = parts.as_slice() else { return };
    let key = text_of(*key, text).trim();
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || key.is_empty() {
        return;
    }
    if let v @ (SecretExpr::Env(_) | SecretExpr::Literal(_)) = classify(text_of(*value, text)) {
        out.assigns.push((key.to_owned(), v));
    }
}

/// Where a Go router variable comes from: the parameter it derives from (`None`: a router the function
/// makes itself) and the prefix of the groups so far.
type Origin = (Option<usize>, String);

/// Go: routes registered on a router parameter, and group prefixes handed to other functions.
fn go_router_params(f: Node<'_>, text: &str, out: &mut AstFacts) {
    let Some(name) = function_name(f, text) else { return };
    let Some(body) = f.child_by_field_name("body") else { return };
    let mut routers = GoRouters::new(params(Grammar::Go, f, text));
    for n in preorder(body, 20_000) {
        routers.leave_closures_before(n.start_byte());
        match n.kind() {
            "short_var_declaration" | "assignment_statement" => routers.assignment(n, text),
            "call_expression" => routers.call(n, text, &name, out),
            _ => {}
        }
    }
}

/// The nodes under `root` in source order (nested blocks too), read iteratively and stopping once more
/// than `limit` are collected: bounded work on generated code.
fn preorder(root: Node<'_>, limit: usize) -> Vec<Node<'_>> {
    let mut cursor = root.walk();
    let mut stack = vec![root];
    let mut order: Vec<Node<'_>> = Vec::new();
    while let Some(n) = stack.pop() {
        order.push(n);
        let kids: Vec<Node<'_>> = n.named_children(&mut cursor).collect();
        stack.extend(kids.into_iter().rev());
        if order.len() > limit {
            break;
        }
    }
    order
}

/// The router variables of one Go function, followed statement by statement.
struct GoRouters {
    /// Variable -> (parameter it derives from, or None for a local router; prefix so far).
    origin: HashMap<String, Origin>,
    /// Closure parameters shadow outer names until the closure ends: (end byte, name, outer entry).
    scoped: Vec<(usize, String, Option<Origin>)>,
}

impl GoRouters {
    /// Each parameter is a router of its own position, without a prefix yet.
    fn new(params: Vec<String>) -> Self {
        let origin = params.into_iter().enumerate().map(|(i, p)| (p, (Some(i), String::new()))).collect();
        GoRouters { origin, scoped: Vec::new() }
    }

    /// Closures that end before `pos` are left: their parameters stop shadowing the outer names.
    fn leave_closures_before(&mut self, pos: usize) {
        while let Some((end, _, _)) = self.scoped.last()
            && pos >= *end
        {
            if let Some((_, name, outer)) = self.scoped.pop() {
                match outer {
                    Some(o) => self.origin.insert(name, o),
                    None => self.origin.remove(&name),
                };
            }
        }
    }

    /// `api := r.Group("/api")` derives a router with a longer prefix; `r := gin.Default()` (or chi,
    /// echo, gorilla) makes a root router.
    fn assignment(&mut self, n: Node<'_>, text: &str) {
        let (Some(l), Some(r)) = (n.child_by_field_name("left"), n.child_by_field_name("right")) else {
            return;
        };
        let var = text_of(l, text).trim();
        if let Some((base, prefix)) = group_of(text_of(r, text), &self.origin) {
            self.origin.insert(var.to_owned(), (base, prefix));
        } else if !var.contains(',') && !self.origin.contains_key(var) {
            let rhs = text_of(r, text);
            if ["gin.Default(", "gin.New(", "chi.NewRouter(", "echo.New(", "mux.NewRouter("]
                .iter()
                .any(|c| rhs.contains(c))
            {
                self.origin.insert(var.to_owned(), (None, String::new()));
            }
        }
    }

    /// A call on or with a known router: a route registered on it, a `Route` closure, a `Mount` of
    /// another function's routes, or the router passed on to another function.
    fn call(&mut self, n: Node<'_>, text: &str, func_name: &str, out: &mut AstFacts) {
        let (Some(func), Some(args)) = (n.child_by_field_name("function"), n.child_by_field_name("arguments")) else {
            return;
        };
        let callee = text_of(func, text);
        let (obj, method) = callee.rsplit_once('.').unwrap_or(("", callee));
        if matches!(method, "POST" | "Post" | "Any" | "HandleFunc" | "Handle" | "Match")
            && let Some((base, _)) = self.origin.get(obj)
        {
            let param = base.unwrap_or(OWN_ROUTER);
            out.param_routes.push(ParamRoute { func_name: func_name.to_owned(), param, line: line_of(n) });
        }
        let mut c = args.walk();
        let arg_nodes: Vec<Node<'_>> = args.named_children(&mut c).collect();
        if method == "Route" {
            self.enter_route_closure(obj, &arg_nodes, text);
        }
        if method == "Mount" {
            self.mount(obj, &arg_nodes, text, out);
        }
        self.routers_passed_on(method, arg_nodes, text, out);
    }

    /// `r.Route("/api", func(api chi.Router) {...})`: the closure's router has the prefix.
    fn enter_route_closure(&mut self, obj: &str, arg_nodes: &[Node<'_>], text: &str) {
        if let (Some(known), [path, closure, ..]) = (self.origin.get(obj).cloned(), arg_nodes)
            && closure.kind() == "func_literal"
            && let Some(lit) = string_literal(text_of(*path, text).trim())
        {
            for p in params(Grammar::Go, *closure, text) {
                let outer = self.origin.insert(p.clone(), (known.0, join_route(&known.1, &lit)));
                self.scoped.push((closure.end_byte(), p, outer));
            }
        }
    }

    /// `r.Mount("/webhooks", webhooks.Routes())` on a root router: `Routes` serves under it.
    fn mount(&self, obj: &str, arg_nodes: &[Node<'_>], text: &str, out: &mut AstFacts) {
        if let (Some((None, prefix)), [path, mounted, ..]) = (self.origin.get(obj), arg_nodes)
            && mounted.kind() == "call_expression"
            && let Some(f) = mounted.child_by_field_name("function")
            && let Some(lit) = string_literal(text_of(*path, text).trim())
        {
            let callee = text_of(f, text);
            let callee = callee.rsplit('.').next().unwrap_or(callee);
            out.group_args.push(GroupArg {
                callee: callee.to_owned(),
                arg: OWN_ROUTER,
                prefix: join_route(prefix, &lit),
            });
        }
    }

    /// A local router with a prefix passed to `method(...)`: that function's routes serve under it.
    fn routers_passed_on(&self, method: &str, arg_nodes: Vec<Node<'_>>, text: &str, out: &mut AstFacts) {
        for (i, a) in arg_nodes.into_iter().enumerate() {
            let at = text_of(a, text).trim();
            let known = self.origin.get(at).cloned().or_else(|| group_of(at, &self.origin));
            if let Some((None, prefix)) = known
                && !prefix.is_empty()
            {
                out.group_args.push(GroupArg { callee: method.to_owned(), arg: i, prefix });
            }
        }
    }
}

/// `api.Group("/webhooks")` / `r.Route("/x", ...)` on a known router -> its origin and prefix.
fn group_of(expr: &str, origin: &HashMap<String, Origin>) -> Option<Origin> {
    let (obj, rest) = expr.trim().split_once(".Group(")?;
    let (base, prefix) = origin.get(obj.trim())?.clone();
    let lit = string_literal(rest.split([',', ')']).next()?.trim())?;
    Some((base, join_route(&prefix, &lit)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    fn facts_of(g: Grammar, src: &str, _ctors: &[&str]) -> AstFacts {
        let tree = parse(g, src).expect("parses");
        facts(g, &tree, src)
    }

    #[test]
    fn reserialized_body_and_acked_failures_in_js() {
        let src = "async function h(req, res) {\n  const wh = new Webhook(s)\n  try {\n    wh.verify(JSON.stringify(req.body), h)\n  } catch (e) {\n    return res.status(200).send('ok')\n  }\n}\n";
        let f = facts_of(Grammar::JavaScript, src, &["Webhook"]);
        assert_eq!(f.verify_sites.len(), 1);
        assert!(f.verify_sites[0].reserialized && f.verify_sites[0].acks_failure);
        let src = "async function h(req, res) {\n  const body = JSON.stringify(req.body)\n  try { wh.verify(body, h) } catch (e) { return res.status(400).send('bad') }\n}\n";
        let f = facts_of(Grammar::JavaScript, src, &[]);
        assert!(f.verify_sites[0].reserialized && !f.verify_sites[0].acks_failure);
    }

    #[test]
    fn acked_failures_in_python_and_go() {
        let py = "def h(request):\n    try:\n        wh.verify(payload, headers)\n    except WebhookVerificationError:\n        return Response(status_code=200)\n";
        assert!(facts_of(Grammar::Python, py, &[]).verify_sites[0].acks_failure);
        let py = "def h(request):\n    try:\n        wh.verify(payload, headers)\n    except WebhookVerificationError:\n        raise HTTPException(status_code=400)\n";
        assert!(!facts_of(Grammar::Python, py, &[]).verify_sites[0].acks_failure);
        let go = "package h\nfunc H(w http.ResponseWriter, r *http.Request) {\n\tif err := wh.Verify(p, r.Header); err != nil {\n\t\tw.WriteHeader(http.StatusOK)\n\t\treturn\n\t}\n}\n";
        assert!(facts_of(Grammar::Go, go, &[]).verify_sites[0].acks_failure);
        let go = "package h\nfunc H(c *gin.Context) {\n\terr := wh.Verify(p, h)\n\tif err != nil {\n\t\tc.AbortWithStatus(http.StatusUnauthorized)\n\t\treturn\n\t}\n}\n";
        assert!(!facts_of(Grammar::Go, go, &[]).verify_sites[0].acks_failure);
    }

    #[test]
    fn nest_controllers() {
        let src = "@Controller('webhooks')\nexport class W {\n  constructor(private c: C) {}\n  @Get('x') g() {}\n  @Post('clerk')\n  @HttpCode(200)\n  async clerk(@Req() req: R) { return 1 }\n}\n";
        let f = facts_of(Grammar::TypeScript, src, &[]);
        assert_eq!(f.nest_routes.len(), 1, "{:?}", f.nest_routes);
        assert_eq!((f.nest_routes[0].route.as_str(), f.nest_routes[0].name.as_str()), ("/webhooks/clerk", "clerk"));
    }

    #[test]
    fn settings_fields_ctor_params_and_go_groups() {
        let py = "class Settings(BaseSettings):\n    model_config = SettingsConfigDict(env_prefix='app_')\n    CLERK_WEBHOOK_SECRET: SecretStr\n";
        let f = facts_of(Grammar::Python, py, &[]);
        assert_eq!(
            f.assigns,
            vec![("CLERK_WEBHOOK_SECRET".to_owned(), SecretExpr::Env("APP_CLERK_WEBHOOK_SECRET".into()))]
        );
        let go = "package h\nfunc New(secret string) *H {\n\twh, _ := svix.NewWebhook(secret)\n\treturn &H{wh: wh}\n}\nfunc Load() C { return C{Secret: mustGet(\"CLERK_WEBHOOK_SECRET\")} }\nfunc main() {\n\tr := gin.Default()\n\tapi := r.Group(\"/api\")\n\troutes.Register(api, New(cfg.Secret))\n}\nfunc Register(g *gin.RouterGroup, h *H) {\n\tw := g.Group(\"/webhooks\")\n\tw.POST(\"/clerk\", h.Handle)\n}\n";
        let f = facts_of(Grammar::Go, go, &["svix.NewWebhook"]);
        assert_eq!(f.ctor_params, vec![("New".to_owned(), 0, "secret".to_owned())]);
        assert_eq!(f.assigns, vec![("Secret".to_owned(), SecretExpr::Env("CLERK_WEBHOOK_SECRET".into()))]);
        assert_eq!(f.group_args, vec![GroupArg { callee: "Register".into(), arg: 0, prefix: "/api".into() }]);
        assert_eq!(f.param_routes, vec![ParamRoute { func_name: "Register".into(), param: 0, line: 14 }]);
        assert!(f.calls.iter().any(|c| c.callee == "New" && c.args == ["cfg.Secret"]));
    }

    #[test]
    fn chi_route_closures_and_mounts() {
        let go = "package m\nfunc main() {\n\tr := chi.NewRouter()\n\tr.Route(\"/api\", func(r chi.Router) {\n\t\tr.Mount(\"/hooks\", hooks.Routes(s))\n\t})\n\tr.Mount(\"/other\", other.Routes())\n\tr.Mount(\"/h\", handler)\n}\nfunc Routes() http.Handler {\n\tr := chi.NewRouter()\n\tr.Post(\"/clerk\", h)\n\treturn r\n}\n";
        let f = facts_of(Grammar::Go, go, &[]);
        assert_eq!(
            f.group_args,
            vec![
                GroupArg { callee: "Routes".into(), arg: OWN_ROUTER, prefix: "/api/hooks".into() },
                GroupArg { callee: "Routes".into(), arg: OWN_ROUTER, prefix: "/other".into() },
            ],
            "the closure's `r` shadows the outer one only inside the closure; a mounted value is no call"
        );
        assert_eq!(f.param_routes, vec![ParamRoute { func_name: "Routes".into(), param: OWN_ROUTER, line: 12 }]);
    }
}
