//! Lexical helpers shared by the extractors: line numbers, bracket matching that skips strings and
//! comments, argument splitting and Python block ends. All of them work on bytes of ASCII delimiters, so
//! they are safe on any UTF-8 text (a multi-byte character never contains an ASCII byte), linear in the
//! size of the text, and never panic on unbalanced input.

/// Byte offsets of line starts, for turning a match offset into a 1-based line number.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = Vec::with_capacity(text.len() / 32 + 1);
        starts.push(0);
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
            }
        }
        Self { starts, len: text.len() }
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> u32 {
        let idx = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        u32::try_from(idx + 1).unwrap_or(u32::MAX)
    }

    /// Number of lines.
    pub(crate) fn count(&self) -> usize {
        self.starts.len()
    }

    /// Byte range of a 1-based line, without its line terminator.
    pub(crate) fn range(&self, line: usize) -> (usize, usize) {
        if line == 0 || line > self.starts.len() {
            return (self.len, self.len);
        }
        let start = self.starts[line - 1];
        let end = if line < self.starts.len() { self.starts[line] - 1 } else { self.len };
        (start, end.max(start))
    }

    /// The text of a 1-based line, without `\n` or `\r`.
    pub(crate) fn line<'t>(&self, text: &'t str, line: usize) -> &'t str {
        let (s, e) = self.range(line);
        text.get(s..e).unwrap_or("").trim_end_matches('\r')
    }

    /// Start offset of the line holding `offset`.
    pub(crate) fn line_start(&self, offset: usize) -> usize {
        let line = self.line_of(offset) as usize;
        self.range(line).0
    }
}

/// A [`LineIndex`] built on first use: most files never need one.
pub(crate) struct LazyLines<'t> {
    text: &'t str,
    cell: std::cell::OnceCell<LineIndex>,
}

impl<'t> LazyLines<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Self { text, cell: std::cell::OnceCell::new() }
    }

    pub(crate) fn get(&self) -> &LineIndex {
        self.cell.get_or_init(|| LineIndex::new(self.text))
    }
}

/// The last `max` bytes of `s`, cut on a character boundary.
pub(crate) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while start < s.len() && !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The first `max` bytes of `s`, cut on a character boundary.
pub(crate) fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Which comment and string syntax a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// JavaScript / TypeScript: `//`, `/* */`, `'`, `"`, template literals with `${}`.
    Js,
    /// Go: `//`, `/* */`, `"`, raw strings in backticks, runes.
    Go,
    /// Python: `#`, `'`, `"`, triple-quoted strings.
    Py,
}

/// Matching pairs of `(`/`)`, `[`/`]`, `{`/`}` outside strings and comments, computed in one pass.
pub(crate) struct Brackets {
    /// `(open offset, close offset)`, sorted by open offset.
    pairs: Vec<(usize, usize)>,
    /// Byte ranges of comments.
    comments: Vec<(usize, usize)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    Bracket(u8, usize),
    /// `${` inside a template literal: when its `}` closes we are back in the template.
    TemplateExpr,
}

/// The one pass `Brackets::new` makes over a file: the position, the open brackets and what was found.
struct BracketScan<'t> {
    b: &'t [u8],
    syntax: Syntax,
    i: usize,
    pairs: Vec<(usize, usize)>,
    comments: Vec<(usize, usize)>,
    stack: Vec<Frame>,
    /// Whether we are inside a template literal body (JS), resumed after a `${...}` closes.
    in_template: bool,
}

impl BracketScan<'_> {
    /// Inside a template literal only `\`, the closing backtick and `${` matter.
    #[inline]
    fn template_byte(&mut self) {
        let (b, n, i) = (self.b, self.b.len(), self.i);
        match b[i] {
            b'\\' => self.i += 2,
            b'`' => {
                self.in_template = false;
                self.i += 1;
            }
            b'$' if i + 1 < n && b[i + 1] == b'{' => {
                self.stack.push(Frame::TemplateExpr);
                self.in_template = false;
                self.i += 2;
            }
            _ => self.i += 1,
        }
    }

    /// In code: comments are recorded and skipped, strings skipped, brackets paired.
    #[inline]
    fn code_byte(&mut self) {
        let (b, n, i, syntax) = (self.b, self.b.len(), self.i, self.syntax);
        let c = b[i];
        match c {
            b'/' if syntax != Syntax::Py && i + 1 < n && b[i + 1] == b'/' => {
                self.comment(i, memchr_from(b, b'\n', i).unwrap_or(n));
            }
            b'/' if syntax != Syntax::Py && i + 1 < n && b[i + 1] == b'*' => {
                self.comment(i, find_from(b, b"*/", i + 2).map_or(n, |p| p + 2));
            }
            b'#' if syntax == Syntax::Py => self.comment(i, memchr_from(b, b'\n', i).unwrap_or(n)),
            b'"' | b'\'' if syntax == Syntax::Py => {
                if i + 2 < n && b[i + 1] == c && b[i + 2] == c {
                    let delim = [c, c, c];
                    self.i = find_from(b, &delim, i + 3).map_or(n, |p| p + 3);
                } else {
                    self.i = skip_quoted(b, i, c);
                }
            }
            b'"' => self.i = skip_quoted(b, i, b'"'),
            b'\'' if syntax == Syntax::Js => self.i = skip_quoted(b, i, b'\''),
            b'\'' if syntax == Syntax::Go => {
                // A rune: at most a few bytes; do not run past the line.
                self.i = skip_quoted(b, i, b'\'');
            }
            b'`' if syntax == Syntax::Go => {
                self.i = memchr_from(b, b'`', i + 1).map_or(n, |p| p + 1);
            }
            b'`' => {
                self.in_template = true;
                self.i += 1;
            }
            b'(' | b'[' | b'{' => {
                self.stack.push(Frame::Bracket(c, i));
                self.i += 1;
            }
            b')' | b']' | b'}' => {
                self.close(c);
                self.i += 1;
            }
            _ => self.i += 1,
        }
    }

    #[inline]
    fn comment(&mut self, start: usize, end: usize) {
        self.comments.push((start, end));
        self.i = end;
    }

    /// A closer pops to its matching opener (stray closers are tolerated); the `}` of a `${...}` resumes
    /// the template literal.
    #[inline]
    fn close(&mut self, c: u8) {
        let want = match c {
            b')' => b'(',
            b']' => b'[',
            _ => b'{',
        };
        if let Some(pos) = self.stack.iter().rposition(|f| match f {
            Frame::Bracket(o, _) => *o == want,
            Frame::TemplateExpr => want == b'{',
        }) {
            let frame = self.stack[pos];
            self.stack.truncate(pos);
            match frame {
                Frame::Bracket(_, open) => self.pairs.push((open, self.i)),
                Frame::TemplateExpr => self.in_template = true,
            }
        }
    }
}

impl Brackets {
    pub(crate) fn new(text: &str, syntax: Syntax) -> Self {
        let mut scan = BracketScan {
            b: text.as_bytes(),
            syntax,
            i: 0,
            pairs: Vec::new(),
            comments: Vec::new(),
            stack: Vec::new(),
            in_template: false,
        };
        while scan.i < scan.b.len() {
            if scan.in_template {
                scan.template_byte();
            } else {
                scan.code_byte();
            }
        }
        let BracketScan { mut pairs, comments, .. } = scan;
        pairs.sort_unstable();
        Self { pairs, comments }
    }

    /// The text with every comment blanked out (newlines kept), so offsets and lines are unchanged.
    /// Blanking every byte of a comment with an ASCII space keeps the text valid UTF-8.
    pub(crate) fn masked(&self, text: &str) -> String {
        if self.comments.is_empty() {
            return text.to_owned();
        }
        let mut bytes = text.as_bytes().to_vec();
        for &(s, e) in &self.comments {
            for b in bytes.iter_mut().take(e.min(text.len())).skip(s) {
                if *b != b'\n' {
                    *b = b' ';
                }
            }
        }
        String::from_utf8(bytes).unwrap_or_else(|_| text.to_owned())
    }

    /// The offset of the bracket closing the one opened at `open`.
    pub(crate) fn close_of(&self, open: usize) -> Option<usize> {
        self.pairs.binary_search_by_key(&open, |p| p.0).ok().map(|i| self.pairs[i].1)
    }

    /// The first bracket pair opening at or after `from`.
    pub(crate) fn next_open(&self, from: usize) -> Option<(usize, usize)> {
        let i = match self.pairs.binary_search_by_key(&from, |p| p.0) {
            Ok(i) | Err(i) => i,
        };
        self.pairs.get(i).copied()
    }
}

fn memchr_from(b: &[u8], needle: u8, from: usize) -> Option<usize> {
    b.get(from..)?.iter().position(|&x| x == needle).map(|p| p + from)
}

fn find_from(b: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let hay = b.get(from..)?;
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// Skips a quoted string starting at `i` (the quote); stops at the closing quote or the end of the line.
fn skip_quoted(b: &[u8], i: usize, q: u8) -> usize {
    let n = b.len();
    let mut j = i + 1;
    while j < n {
        match b[j] {
            b'\\' => j += 2,
            b'\n' => return j + 1,
            x if x == q => return j + 1,
            _ => j += 1,
        }
    }
    n
}

/// Splits the text between a call's parentheses into top-level arguments (byte ranges relative to
/// `args`), respecting nesting and quotes.
pub(crate) fn split_args(args: &str) -> Vec<(usize, usize)> {
    let b = args.as_bytes();
    let mut out = Vec::new();
    let mut depth: i32 = 0;
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                let q = b[i];
                let mut j = i + 1;
                while j < b.len() && b[j] != q {
                    if b[j] == b'\\' {
                        j += 1;
                    }
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < b.len() && !args[start..].trim().is_empty() {
        out.push((start, b.len()));
    }
    out
}

/// Indentation width of a line (tabs count as 4).
pub(crate) fn indent_of(line: &str) -> usize {
    let mut w = 0;
    for c in line.chars() {
        match c {
            ' ' => w += 1,
            '\t' => w += 4,
            _ => break,
        }
    }
    w
}

/// The end offset of the Python block whose header is on 1-based line `header`: the block runs until
/// the first later non-blank, non-comment line indented no deeper than the header.
pub(crate) fn python_block_end(text: &str, lines: &LineIndex, header: usize) -> usize {
    let base = indent_of(lines.line(text, header));
    let mut last = lines.range(header).1;
    let mut l = header + 1;
    // Skip the rest of a multi-line header (`def f(\n a,\n b):`).
    let mut opened: i32 = lines.line(text, header).bytes().fold(0, |d, c| match c {
        b'(' | b'[' => d + 1,
        b')' | b']' => d - 1,
        _ => d,
    });
    while opened > 0 && l <= lines.count() {
        opened += lines.line(text, l).bytes().fold(0, |d, c| match c {
            b'(' | b'[' => d + 1,
            b')' | b']' => d - 1,
            _ => d,
        });
        last = lines.range(l).1;
        l += 1;
    }
    while l <= lines.count() {
        let s = lines.line(text, l);
        let t = s.trim_start();
        if t.is_empty() || t.starts_with('#') {
            l += 1;
            continue;
        }
        if indent_of(s) <= base {
            break;
        }
        last = lines.range(l).1;
        l += 1;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_skip_strings_comments_and_templates() {
        let src = "f('(', \"}\", `a ${b({})} )`) // )\n/* ( */ g{}";
        let br = Brackets::new(src, Syntax::Js);
        assert_eq!(br.close_of(1), Some(src.find(") //").unwrap_or(0)));
        let g = src.find("g{").unwrap_or(0) + 1;
        assert_eq!(br.close_of(g), Some(g + 1));
    }

    #[test]
    fn masks_comments_keeping_offsets() {
        let src = "a(1) // x(é)\n/* é\n */ b('//')";
        let br = Brackets::new(src, Syntax::Js);
        let m = br.masked(src);
        assert_eq!(m.len(), src.len());
        assert!(!m.contains('x') && !m.contains('é'));
        assert!(m.contains("b('//')"));
        assert_eq!(m.matches('\n').count(), 2);
        let py = "x = 1  # verify(\ny = '#'\n";
        let m = Brackets::new(py, Syntax::Py).masked(py);
        assert!(!m.contains("verify") && m.contains("'#'"));
    }

    #[test]
    fn brackets_survive_unbalanced_input() {
        let br = Brackets::new("))){{{((( '\"` ", Syntax::Js);
        assert_eq!(br.close_of(3), None);
        let _ = Brackets::new("\"\"\"", Syntax::Py);
        let _ = Brackets::new("`", Syntax::Go);
    }

    #[test]
    fn splits_arguments() {
        let args = "'/x', express.raw({ a: 1, b: [2, 3] }), async (req, res) => { f(1, 2) }";
        let parts: Vec<&str> = split_args(args).into_iter().map(|(s, e)| args[s..e].trim()).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "'/x'");
    }

    #[test]
    fn line_index_and_python_blocks() {
        let src = "def f(a,\n      b):\n    x = 1\n\n    # c\n    return x\ny = 2\n";
        let li = LineIndex::new(src);
        assert_eq!(li.line_of(0), 1);
        assert_eq!(li.line_of(src.find("y =").unwrap_or(0)), 7);
        let end = python_block_end(src, &li, 1);
        assert!(src[..end].ends_with("return x"));
    }

    #[test]
    fn head_and_tail_respect_char_boundaries() {
        let s = "ééé";
        assert_eq!(tail(s, 3), "é");
        assert_eq!(head(s, 3), "é");
    }
}
