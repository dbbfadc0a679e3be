//! containerd filter expressions, compatible with the Go package
//! `github.com/containerd/containerd/filters` as shipped in containerd v1.6.20.
//!
//! # Where filters are used
//!
//! * `containers.v1.Containers/List` and `ListStream`: `ListContainersRequest.filters`
//!   selects the containers of the caller's namespace (spec §6.3).
//! * `events.v1.Events/Subscribe`: `SubscribeRequest.filters` selects envelopes by
//!   `namespace`, `topic` and `event.<path>` (spec §8).
//!
//! Both pass a *list* of filter strings. The list matches an object when **any**
//! filter matches it (OR); an empty list, or an empty string anywhere in the list,
//! matches everything (see [`FilterSet`]).
//!
//! # Grammar
//!
//! ```text
//! filter    := selector ( "," selector )*       all selectors must match (AND)
//! selector  := fieldpath [ operator value ]    without operator: "field is present"
//! fieldpath := field ( "." field )*
//! field     := [A-Za-z0-9_]+ | quoted          quoted: only "..." here
//! operator  := "==" | "!=" | "~="
//! value     := quoted | bare
//! quoted    := "..." | /.../ | |...|           / and | only after ~=
//! ```
//!
//! The grammar above is what the lexer of containerd really accepts, which is
//! looser and stranger than its own doc comment claims. The lexer is therefore
//! reproduced state for state (`Scanner` below) rather than written from the
//! grammar, because the exact error texts and positions depend on its quirks:
//!
//! * The scanner is modal: after an operator it lexes a *bare value* that starts
//!   with any character other than a quote, `,`, `.`, `=`, `!`, `~` or white space,
//!   and then runs over every Unicode graphic character except `,` (so `.`, `/`,
//!   `:`, `"` and `=` are fine after the first character).
//! * White space (Unicode White_Space, e.g. also U+00A0) is skipped before a
//!   field, an operator or a value, but white space before `,` or `.`, trailing
//!   white space and a trailing `,` are errors.
//! * The operator is the longest run of `=`, `!`, `~`; anything other than the
//!   three supported operators is `unsupported operator "..."`.
//! * Quoted strings use Go escapes (`\a \b \f \n \r \t \v \\`, the quote itself,
//!   octal `\NNN`, `\xNN`, `\uNNNN`, `\UNNNNNNNN`). `\x` and octal escapes produce
//!   raw bytes, so a value may end up not being UTF-8; such a value equals
//!   nothing and such a field is never present (containerd compares bytes; our
//!   objects only hold UTF-8 strings).
//! * A NUL character or a literal U+FFFD in the input is an error
//!   (`unexpected null`, `rune error`), like Go's UTF-8 decoder reports.
//!
//! # Matching
//!
//! * presence: the adaptor returns a value;
//! * `==`: present and equal;
//! * `!=`: the value (or `""` when absent) differs, so absent fields match `!=x`;
//! * `~=`: unanchored regular-expression search in the value (`""` when absent).
//!   The expression is compiled once, at parse time. An invalid expression is no
//!   parse error: the selector just never matches, as in containerd.
//!
//! Field names are case-sensitive; what a path means is up to the [`Adaptor`].
//!
//! # Regular expressions
//!
//! containerd uses Go's `regexp` (RE2 syntax). Rust's `regex` crate is close, but
//! differs in ways that change results, so patterns are first translated from Go
//! syntax to an equivalent `regex` pattern (module `re2`), rejecting what Go
//! rejects:
//!
//! * `\d \s \w \b \B` are ASCII-only in Go (`\s` is `[\t\n\f\r ]`, without `\v`)
//!   but Unicode-aware in Rust: translated to explicit ASCII classes.
//! * Go treats `{` that does not start a valid repetition as a literal, rejects
//!   counts above 1000 (also as a product of nested counted repetitions), rejects
//!   `a**`, supports `\Q...\E`, `\p{^Name}`, repeated flags `(?ii)`, an empty flag
//!   group `(?)`, a repetition after a flag group (`a(?i)*`), `[` `&&` `--` `~~`
//!   as literals inside classes and ranges such as `[\d-z]`; all of them are
//!   handled.
//! * Go's `\p{C}` does not include unassigned code points, Rust's does:
//!   translated to `[\p{Cc}\p{Cf}\p{Co}]` (Rust has no `\p{Cs}`; surrogates
//!   never occur in UTF-8 text anyway). Only Go 1.19's exact names are accepted
//!   for `\p` (`Any`, the general categories, the Unicode 13 scripts), while
//!   Rust matches names loosely and knows aliases.
//! * Go 1.19's Unicode tables are version 13.0, the `regex` crate's newer:
//!   `\p` classes are intersected with `\p{Age=13.0}` (characters assigned
//!   since are in no category or script for Go). The bare-value lexer does the
//!   same for its "graphic character" test.
//! * Rust accepts syntax Go does not (`(?x)`, `(?<name>...)`, `\<`, `\e`,
//!   `\u{...}`, single-digit octal, …); those are rejected, i.e. never match.
//!
//! Remaining known differences: simple case folding (`(?i)`) follows the
//! `regex` crate's Unicode version, and so do general categories of characters
//! whose category changed after Unicode 13; Go's limits on expression size and
//! nesting depth (1000) are not replicated, while `regex`'s compiled-size limit
//! (10 MiB) and nesting limit (250) apply: a pattern past them never matches.
//! Only whether there is a match is used, so leftmost-first versus other match
//! semantics and greediness do not matter.
//!
//! The lexer, the error texts and the translation were checked differentially
//! against the Go package (built with Go 1.19.8) on some 75,000 generated
//! filters and expressions, with no difference left.
//!
//! # Errors
//!
//! [`ParseError`]'s `Display` is exactly the text of the Go error returned by
//! `filters.Parse`, for instance
//! `filters: parse error: [labels. >|?|< x]: expected field or quoted`.
//! What the gRPC status carries is longer: see
//! [`ParseError::containerd_message`] (List/ListStream) and
//! [`ParseError::subscribe_message`] (Events Subscribe).

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

/// What a filter is evaluated against: the value of a field path, or `None`
/// when the field is absent.
///
/// For containerd compatibility an adaptor returns `None` for unknown paths
/// and, for plain string fields, when the value is empty (containerd's adaptors
/// report `present = len(value) > 0`); a map entry (e.g. a label) is present
/// whenever the key exists, even with an empty value.
///
/// containerd's own adaptors only look at the components they need, which
/// gives a few quirks an exact reimplementation may want: for containers
/// (`metadata/adaptors.go`) `id.<anything>` and `image.<anything>` are the id
/// and the image, `runtime.name.<anything>` is the runtime name, and `labels`
/// alone looks up the label with the empty key; events are alike
/// (`namespace.<anything>` is the namespace, `event.runtime.name.<anything>`
/// the runtime name of a create event).
pub trait Adaptor {
    /// Returns the value at `path` (its components as written in the filter,
    /// quotes removed), or `None` if there is no such field.
    fn field(&self, path: &[String]) -> Option<Cow<'_, str>>;
}

/// A parsed list of filters: matches when ANY filter matches (OR); each filter
/// is an AND of selectors. An empty list, or any empty-string filter, matches
/// everything.
#[derive(Debug, Clone)]
pub struct FilterSet {
    /// Set when there were no filters or one of them was the empty string.
    match_all: bool,
    filters: Vec<Filter>,
}

impl Default for FilterSet {
    /// The filter set that matches everything (no filters).
    fn default() -> Self {
        FilterSet {
            match_all: true,
            filters: Vec::new(),
        }
    }
}

impl FilterSet {
    /// Parses every filter string, like containerd's `filters.ParseAll`.
    ///
    /// All strings are parsed even when one of them is empty, so an invalid
    /// filter is reported even next to an empty one. The first invalid filter
    /// (in order) is the one reported.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<FilterSet, ParseError> {
        let mut set = FilterSet {
            match_all: filters.is_empty(),
            filters: Vec::with_capacity(filters.len()),
        };
        for filter in filters {
            let filter = filter.as_ref();
            if filter.is_empty() {
                // containerd special-cases "" as a filter that always matches.
                set.match_all = true;
                continue;
            }
            set.filters.push(Parser::new(filter).parse()?);
        }
        Ok(set)
    }

    /// Whether `target` matches: any filter whose selectors all match.
    pub fn matches<A: Adaptor + ?Sized>(&self, target: &A) -> bool {
        self.match_all || self.filters.iter().any(|f| f.matches(target))
    }

    /// True when the set matches anything without looking at the target (no
    /// filters, or an empty filter among them); callers may skip evaluation.
    pub fn matches_all(&self) -> bool {
        self.match_all
    }
}

/// One filter: all selectors must match.
#[derive(Debug, Clone)]
struct Filter {
    selectors: Vec<Selector>,
}

impl Filter {
    fn matches<A: Adaptor + ?Sized>(&self, target: &A) -> bool {
        self.selectors.iter().all(|s| s.matches(target))
    }
}

#[derive(Debug, Clone)]
struct Selector {
    /// `None` when a quoted component decoded to bytes that are not UTF-8: no
    /// object can have such a field, so it is treated as absent.
    path: Option<Vec<String>>,
    op: Op,
}

/// Operator with its operand. A `None` operand is a value that is not UTF-8
/// (for `==`/`!=`) or a regular expression Go would not compile (for `~=`).
#[derive(Debug, Clone)]
enum Op {
    Present,
    Equal(Option<String>),
    NotEqual(Option<String>),
    Matches(Option<Regex>),
}

impl Selector {
    fn matches<A: Adaptor + ?Sized>(&self, target: &A) -> bool {
        let value = self.path.as_deref().and_then(|path| target.field(path));
        match &self.op {
            Op::Present => value.is_some(),
            Op::Equal(want) => match (value, want) {
                (Some(have), Some(want)) => have == want.as_str(),
                _ => false,
            },
            // containerd compares the (possibly empty) value even when absent.
            Op::NotEqual(want) => match want {
                Some(want) => value.as_deref().unwrap_or("") != want.as_str(),
                None => true,
            },
            Op::Matches(re) => re
                .as_ref()
                .is_some_and(|re| re.is_match(value.as_deref().unwrap_or(""))),
        }
    }
}

/// A filter string that containerd's parser rejects.
///
/// `Display` renders exactly the Go error of `filters.Parse`:
/// `filters: parse error: [<context>]: <reason>`, where `<context>` is the whole
/// filter string with the offending byte marked as `<before> >|<byte>|< <after>`,
/// or just the filter string when the error is at its end (e.g.
/// `[labels. >|?|< x]`, `[id==]`).
///
/// The marker holds one *byte*: when it points at a multi-byte character Go
/// splits the UTF-8 sequence, and gRPC-Go then sends each invalid byte as
/// U+FFFD; `Display` renders it the same way.
///
/// This is the error of `filters.Parse`, without the `: invalid argument`
/// (errdefs class) that `filters.ParseAll` and the callers append. It is not
/// what containerd's gRPC status carries; use
/// [`containerd_message`](Self::containerd_message) for List/ListStream and
/// [`subscribe_message`](Self::subscribe_message) for Events Subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The filter string that failed (one element of the request's list).
    input: String,
    /// Byte offset of the error in `input`; `input.len()` when at the end.
    pos: usize,
    /// Why, e.g. `expected field or quoted`.
    reason: String,
}

impl ParseError {
    /// The filter string that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Byte offset of the offending character in [`input`](Self::input), or
    /// `None` when the error is at the end of the input.
    pub fn position(&self) -> Option<usize> {
        (self.pos < self.input.len()).then_some(self.pos)
    }

    /// The reason alone, e.g. `unsupported operator "="`.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The status message containerd 1.6.20 returns for List and ListStream
    /// with code INVALID_ARGUMENT:
    /// `filters: parse error: [<context>]: <reason>: invalid argument: invalid argument`.
    ///
    /// How containerd builds it: `filters.ParseAll` appends `: invalid argument`
    /// (errdefs.ErrInvalidArgument), the containers store appends it a second
    /// time, then `errdefs.ToGRPC` calls `status.Errorf(codes.InvalidArgument,
    /// err.Error())`, i.e. uses the message as a *format string* without
    /// arguments. So every `%` in the filter is interpreted by Go's `fmt`:
    /// `%%` becomes `%`, `%|` becomes `%!|(MISSING)`, a trailing `%` becomes
    /// `%!(NOVERB)`, and so on; this is reproduced here. Finally gRPC-Go sends
    /// each byte that is not valid UTF-8 as U+FFFD.
    pub fn containerd_message(&self) -> String {
        let mut raw = self.go_error_bytes();
        raw.extend_from_slice(b": invalid argument: invalid argument");
        grpc_text(&go_sprintf_without_args(&raw))
    }

    /// The status message of an Events Subscribe stream that ends on this
    /// error; containerd 1.6.20 ends it with code UNKNOWN (not
    /// INVALID_ARGUMENT) and this text:
    /// `subscription error: failed parsing subscription filters: filters: parse error: [<context>]: <reason>: invalid argument`.
    ///
    /// The events service returns a plain Go error, so there is no `fmt`
    /// re-interpretation here (unlike [`containerd_message`](Self::containerd_message));
    /// only the UTF-8 repair of gRPC-Go applies.
    pub fn subscribe_message(&self) -> String {
        let mut raw = b"subscription error: failed parsing subscription filters: ".to_vec();
        raw.extend_from_slice(&self.go_error_bytes());
        raw.extend_from_slice(b": invalid argument");
        grpc_text(&raw)
    }

    /// The Go error text as bytes; it is not UTF-8 when the marked byte is part
    /// of a multi-byte character.
    fn go_error_bytes(&self) -> Vec<u8> {
        let input = self.input.as_bytes();
        let mut out = b"filters: parse error: [".to_vec();
        match input.get(self.pos) {
            Some(&marked) => {
                out.extend_from_slice(&input[..self.pos]);
                out.extend_from_slice(b" >|");
                out.push(marked);
                out.extend_from_slice(b"|< ");
                out.extend_from_slice(&input[self.pos + 1..]);
            }
            None => out.extend_from_slice(input),
        }
        out.extend_from_slice(b"]: ");
        out.extend_from_slice(self.reason.as_bytes());
        out
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&grpc_text(&self.go_error_bytes()))
    }
}

impl std::error::Error for ParseError {}

// ---------------------------------------------------------------------------
// Scanner

/// One decoded character, or the two pseudo characters of containerd's scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rune {
    Char(char),
    Eof,
    /// NUL or U+FFFD; the scanner's error message says which.
    Illegal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Eof,
    Illegal,
    /// Text including its quote characters.
    Quoted(&'a str),
    Value(&'a str),
    Field(&'a str),
    /// `,` or `.`
    Separator,
    Operator(&'a str),
    /// Any other character.
    Other,
}

/// A faithful model of containerd's scanner. Its two cursors matter for error
/// positions: `ppos` is the offset of the next unread character and `pos` the
/// offset of the character read last. The first error message sticks, even
/// when it was produced by a look-ahead, because the parser reports it later.
struct Scanner<'a> {
    input: &'a str,
    pos: usize,
    ppos: usize,
    /// Set after an operator: the next token is lexed as a bare value.
    value: bool,
    err: &'static str,
}

impl<'a> Scanner<'a> {
    fn new(input: &'a str) -> Self {
        Scanner {
            input,
            pos: 0,
            ppos: 0,
            value: false,
            err: "",
        }
    }

    fn error(&mut self, msg: &'static str) {
        if self.err.is_empty() {
            self.err = msg;
        }
    }

    fn next(&mut self) -> Rune {
        // Go checks `pos`, not `ppos`: the read after the last character moves
        // `pos` to the end of the input before reporting EOF.
        if self.pos >= self.input.len() {
            return Rune::Eof;
        }
        self.pos = self.ppos;
        let Some(c) = self.input.get(self.ppos..).and_then(|s| s.chars().next()) else {
            return Rune::Eof;
        };
        self.ppos += c.len_utf8();
        match c {
            // Go's decoder returns U+FFFD for invalid input and the scanner
            // cannot tell it from a literal U+FFFD.
            '\u{FFFD}' => {
                self.error("rune error");
                Rune::Illegal
            }
            '\0' => {
                self.error("unexpected null");
                Rune::Illegal
            }
            c => Rune::Char(c),
        }
    }

    fn peek(&mut self) -> Rune {
        let (pos, ppos) = (self.pos, self.ppos);
        let r = self.next();
        self.pos = pos;
        self.ppos = ppos;
        r
    }

    fn text(&self, start: usize) -> &'a str {
        self.input.get(start..self.ppos).unwrap_or("")
    }

    /// Returns the token and the offset it is reported at.
    fn scan(&mut self) -> (usize, Token<'a>) {
        let mut ch = self.next();
        let mut pos = self.pos;
        loop {
            let c = match ch {
                Rune::Eof => return (self.pos, Token::Eof),
                Rune::Illegal => return (self.pos, Token::Illegal),
                Rune::Char(c) => c,
            };
            if is_quote_char(c) {
                let ok = self.scan_quoted(c);
                let text = self.text(pos);
                return (
                    pos,
                    if ok {
                        Token::Quoted(text)
                    } else {
                        Token::Illegal
                    },
                );
            }
            if c == ',' || c == '.' {
                self.value = false;
                return (pos, Token::Separator);
            }
            if is_operator_char(c) {
                self.scan_while(is_operator_char);
                self.value = true;
                return (pos, Token::Operator(self.text(pos)));
            }
            if is_go_space(c) {
                ch = self.next();
                pos = self.pos;
                continue;
            }
            if self.value {
                // The first character of a bare value only has to be none of
                // the above; the rest must be value characters.
                self.scan_while(is_value_char);
                self.value = false;
                return (pos, Token::Value(self.text(pos)));
            }
            if is_field_char(c) {
                self.scan_while(is_field_char);
                return (pos, Token::Field(self.text(pos)));
            }
            return (self.pos, Token::Other);
        }
    }

    fn scan_while(&mut self, accept: fn(char) -> bool) {
        while let Rune::Char(c) = self.peek() {
            if !accept(c) {
                break;
            }
            self.next();
        }
    }

    /// Scans a quoted string after its opening quote. Only checks the syntax;
    /// decoding is [`unquote`]'s job (they disagree on a few escapes, e.g.
    /// `\400` scans but does not decode).
    fn scan_quoted(&mut self, quote: char) -> bool {
        let mut legal = true;
        let mut ch = self.next();
        while ch != Rune::Char(quote) {
            match ch {
                Rune::Char('\n') | Rune::Eof | Rune::Illegal => {
                    self.error("quoted literal not terminated");
                    return false;
                }
                Rune::Char('\\') => {
                    let (after, ok) = self.scan_escape(quote);
                    ch = after;
                    legal &= ok;
                }
                Rune::Char(_) => ch = self.next(),
            }
        }
        legal
    }

    /// Scans an escape after its backslash; returns the character after it.
    fn scan_escape(&mut self, quote: char) -> (Rune, bool) {
        let ch = self.next();
        match ch {
            Rune::Char('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => (self.next(), true),
            Rune::Char(c) if c == quote => (self.next(), true),
            Rune::Char('0'..='7') => self.scan_digits(ch, 8, 3),
            Rune::Char('x') => {
                let first = self.next();
                self.scan_digits(first, 16, 2)
            }
            Rune::Char('u') => {
                let first = self.next();
                self.scan_digits(first, 16, 4)
            }
            Rune::Char('U') => {
                let first = self.next();
                self.scan_digits(first, 16, 8)
            }
            _ => {
                self.error("illegal escape sequence");
                (ch, false)
            }
        }
    }

    fn scan_digits(&mut self, mut ch: Rune, base: u32, mut n: usize) -> (Rune, bool) {
        while n > 0 && digit_value(ch) < base {
            ch = self.next();
            n -= 1;
        }
        if n > 0 {
            self.error("illegal numeric escape sequence");
            return (ch, false);
        }
        (ch, true)
    }
}

fn digit_value(r: Rune) -> u32 {
    match r {
        Rune::Char(c) => c.to_digit(16).unwrap_or(16),
        _ => 16,
    }
}

fn is_quote_char(c: char) -> bool {
    matches!(c, '"' | '/' | '|')
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '~')
}

fn is_field_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Go's `unicode.IsSpace`: the Unicode White_Space property, which is what
/// `char::is_whitespace` implements too.
fn is_go_space(c: char) -> bool {
    c.is_whitespace()
}

/// containerd's `isValueRune`: not `,`, not white space, and a Unicode graphic
/// character (categories L, M, N, P, S, Zs), as Go's `unicode.IsGraphic`.
fn is_value_char(c: char) -> bool {
    if c == ',' || is_go_space(c) {
        return false;
    }
    if c.is_ascii() {
        return c.is_ascii_graphic();
    }
    static GRAPHIC: OnceLock<Option<Regex>> = OnceLock::new();
    // Go 1.19 has Unicode 13 tables: later additions are unassigned there.
    let graphic = GRAPHIC
        .get_or_init(|| Regex::new(r"\A[[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Zs}]&&\p{Age=13.0}]\z").ok());
    let mut buf = [0u8; 4];
    graphic
        .as_ref()
        .is_some_and(|re| re.is_match(c.encode_utf8(&mut buf)))
}

// ---------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    input: &'a str,
    scanner: Scanner<'a>,
}

/// Operator tokens the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Equal,
    NotEqual,
    Matches,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            scanner: Scanner::new(input),
        }
    }

    fn error(&self, pos: usize, reason: impl Into<String>) -> ParseError {
        ParseError {
            input: self.input.to_owned(),
            pos,
            reason: reason.into(),
        }
    }

    /// The scanner's (first) error, for an illegal token.
    fn scanner_error(&self, pos: usize) -> ParseError {
        self.error(pos, self.scanner.err)
    }

    fn parse(mut self) -> Result<Filter, ParseError> {
        let mut selectors = vec![self.selector()?];
        loop {
            match self.scanner.peek() {
                Rune::Char(',') => {
                    self.scanner.scan();
                    selectors.push(self.selector()?);
                }
                Rune::Eof => break,
                other => {
                    // Go prints the look-ahead with string(rune): the illegal
                    // pseudo rune becomes U+FFFD.
                    let shown = match other {
                        Rune::Char(c) => c,
                        _ => '\u{FFFD}',
                    };
                    return Err(self.error(self.scanner.ppos, format!("unexpected input: {shown}")));
                }
            }
        }
        Ok(Filter { selectors })
    }

    fn selector(&mut self) -> Result<Selector, ParseError> {
        let path = self.fieldpath()?;
        let path = path
            .into_iter()
            .map(String::from_utf8)
            .collect::<Result<Vec<_>, _>>()
            .ok();
        if matches!(self.scanner.peek(), Rune::Char(',') | Rune::Eof) {
            return Ok(Selector {
                path,
                op: Op::Present,
            });
        }
        let kind = self.operator()?;
        let value = self.value(kind == OpKind::Matches)?;
        let value = String::from_utf8(value).ok();
        let op = match kind {
            OpKind::Equal => Op::Equal(value),
            OpKind::NotEqual => Op::NotEqual(value),
            OpKind::Matches => Op::Matches(value.as_deref().and_then(re2::compile)),
        };
        Ok(Selector { path, op })
    }

    fn fieldpath(&mut self) -> Result<Vec<Vec<u8>>, ParseError> {
        let mut fields = vec![self.field()?];
        while self.scanner.peek() == Rune::Char('.') {
            self.scanner.scan();
            fields.push(self.field()?);
        }
        Ok(fields)
    }

    fn field(&mut self) -> Result<Vec<u8>, ParseError> {
        let (pos, token) = self.scanner.scan();
        match token {
            Token::Field(text) => Ok(text.as_bytes().to_vec()),
            Token::Quoted(text) => self.unquote(pos, text, false),
            Token::Illegal => Err(self.scanner_error(pos)),
            _ => Err(self.error(pos, "expected field or quoted")),
        }
    }

    fn operator(&mut self) -> Result<OpKind, ParseError> {
        let (pos, token) = self.scanner.scan();
        match token {
            Token::Operator("==") => Ok(OpKind::Equal),
            Token::Operator("!=") => Ok(OpKind::NotEqual),
            Token::Operator("~=") => Ok(OpKind::Matches),
            // Operators only contain `=!~`, so Go's %q is plain quoting.
            Token::Operator(other) => {
                Err(self.error(pos, format!("unsupported operator \"{other}\"")))
            }
            Token::Illegal => Err(self.scanner_error(pos)),
            _ => Err(self.error(pos, r#"expected an operator ("=="|"!="|"~=")"#)),
        }
    }

    fn value(&mut self, allow_alt_quotes: bool) -> Result<Vec<u8>, ParseError> {
        let (pos, token) = self.scanner.scan();
        match token {
            Token::Value(text) | Token::Field(text) => Ok(text.as_bytes().to_vec()),
            Token::Quoted(text) => self.unquote(pos, text, allow_alt_quotes),
            Token::Illegal => Err(self.scanner_error(pos)),
            _ => Err(self.error(pos, "expected value or quoted")),
        }
    }

    fn unquote(
        &self,
        pos: usize,
        text: &str,
        allow_alt_quotes: bool,
    ) -> Result<Vec<u8>, ParseError> {
        if !allow_alt_quotes && !text.starts_with('"') {
            return Err(self.error(pos, "invalid quote encountered"));
        }
        unquote(text).ok_or_else(|| self.error(pos, "unquoting failed: quote syntax error"))
    }
}

/// Decodes a quoted token (quotes included) like containerd's copy of Go's
/// `strconv.Unquote` extended to `/` and `|` quotes. Returns bytes: `\xNN` and
/// octal escapes are single bytes, `\u`/`\U` and literal characters UTF-8.
fn unquote(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let (&quote, rest) = bytes.split_first()?;
    let (&closing, mut body) = rest.split_last()?;
    if closing != quote || !matches!(quote, b'"' | b'/' | b'|') || body.contains(&b'\n') {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    while let Some(&c) = body.first() {
        if c == quote {
            return None;
        }
        if c != b'\\' {
            // Copy one character; `body` always starts on a character boundary
            // because escapes only ever consume ASCII bytes.
            let len = utf8_len(c).min(body.len());
            out.extend_from_slice(&body[..len]);
            body = &body[len..];
            continue;
        }
        let (&esc, tail) = body.get(1..)?.split_first()?;
        body = tail;
        let simple = match esc {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            b'"' | b'/' | b'|' | b'\'' if esc == quote => Some(esc),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        match esc {
            b'x' | b'u' | b'U' => {
                let n = match esc {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let digits = body.get(..n)?;
                let mut v: u32 = 0;
                for &d in digits {
                    v = (v << 4) | char::from(d).to_digit(16)?;
                }
                body = &body[n..];
                if esc == b'x' {
                    out.push(u8::try_from(v).ok()?);
                } else {
                    if v > 0x10FFFF {
                        return None;
                    }
                    // Go encodes a surrogate as U+FFFD.
                    let c = char::from_u32(v).unwrap_or('\u{FFFD}');
                    out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
                }
            }
            b'0'..=b'7' => {
                let digits = body.get(..2)?;
                let mut v = u32::from(esc - b'0');
                for &d in digits {
                    if !(b'0'..=b'7').contains(&d) {
                        return None;
                    }
                    v = (v << 3) | u32::from(d - b'0');
                }
                body = &body[2..];
                out.push(u8::try_from(v).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Length of the UTF-8 sequence starting with `lead` (1 for anything odd).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

// ---------------------------------------------------------------------------
// Message rendering

/// Renders bytes as gRPC-Go does for a status message: each byte that does not
/// start a valid UTF-8 sequence becomes U+FFFD.
fn grpc_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.push_str(valid);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                out.push('\u{FFFD}');
                // Go's decoder skips exactly one byte per invalid sequence.
                rest = after.get(1..).unwrap_or_default();
            }
        }
    }
    out
}

/// Go's `fmt.Sprintf(format)` with no arguments, as `status.Errorf` applies it
/// to containerd's error text: every verb is "missing" and rendered as
/// `%!<verb>(MISSING)`, `%%` is `%`, plus Go's other bad-format markers.
fn go_sprintf_without_args(format: &[u8]) -> Vec<u8> {
    let end = format.len();
    let mut out = Vec::with_capacity(end + 16);
    let mut i = 0;
    while i < end {
        let literal_end = format[i..]
            .iter()
            .position(|&b| b == b'%')
            .map_or(end, |n| i + n);
        out.extend_from_slice(&format[i..literal_end]);
        i = literal_end;
        if i >= end {
            break;
        }
        i += 1; // the '%'
        let mut good_arg_num = true;
        while i < end && matches!(format[i], b'#' | b'0' | b'+' | b'-' | b' ') {
            i += 1;
        }
        // An explicit argument index can never name an argument here.
        let mut after_index;
        (i, after_index) = go_arg_number(format, i, &mut good_arg_num);
        if i < end && format[i] == b'*' {
            i += 1;
            out.extend_from_slice(b"%!(BADWIDTH)");
            after_index = false;
        } else {
            let (width_present, next) = go_parse_num(format, i, end);
            i = next;
            if after_index && width_present {
                good_arg_num = false;
            }
        }
        if i + 1 < end && format[i] == b'.' {
            i += 1;
            if after_index {
                good_arg_num = false;
            }
            (i, after_index) = go_arg_number(format, i, &mut good_arg_num);
            if i < end && format[i] == b'*' {
                i += 1;
                out.extend_from_slice(b"%!(BADPREC)");
                after_index = false;
            } else {
                i = go_parse_num(format, i, end).1;
            }
        }
        if !after_index {
            i = go_arg_number(format, i, &mut good_arg_num).0;
        }
        if i >= end {
            out.extend_from_slice(b"%!(NOVERB)");
            break;
        }
        let (verb, size) = go_decode_rune(&format[i..]);
        i += size;
        if verb == '%' {
            out.push(b'%');
            continue;
        }
        out.extend_from_slice(b"%!");
        out.extend_from_slice(verb.encode_utf8(&mut [0u8; 4]).as_bytes());
        out.extend_from_slice(if good_arg_num {
            b"(MISSING)"
        } else {
            b"(BADINDEX)"
        });
    }
    out
}

/// Go fmt's `argNumber` with zero arguments: skips a `[n]` and marks the verb
/// as having a bad index. Returns the new offset and whether `[n]` parsed.
fn go_arg_number(format: &[u8], i: usize, good_arg_num: &mut bool) -> (usize, bool) {
    if format.get(i) != Some(&b'[') {
        return (i, false);
    }
    *good_arg_num = false;
    let sub = &format[i..];
    if sub.len() < 3 {
        return (i + 1, false);
    }
    match sub.iter().skip(1).position(|&b| b == b']') {
        Some(n) => {
            let close = n + 1;
            let (is_num, next) = go_parse_num(sub, 1, close);
            (i + close + 1, is_num && next == close)
        }
        None => (i + 1, false),
    }
}

/// Go fmt's `parsenum`: digits in `s[start..end]`; on overflow (more than a
/// million) it gives up and jumps to `end`. Returns (found, next offset).
fn go_parse_num(s: &[u8], start: usize, end: usize) -> (bool, usize) {
    if start >= end {
        return (false, end);
    }
    let mut num: u64 = 0;
    let mut found = false;
    let mut i = start;
    while i < end && s[i].is_ascii_digit() {
        if num > 1_000_000 {
            return (false, end);
        }
        num = num * 10 + u64::from(s[i] - b'0');
        found = true;
        i += 1;
    }
    (found, i)
}

/// Go's `utf8.DecodeRune`: an invalid byte decodes as U+FFFD of length 1.
fn go_decode_rune(bytes: &[u8]) -> (char, usize) {
    let len = utf8_len(bytes[0]).min(bytes.len());
    std::str::from_utf8(&bytes[..len])
        .ok()
        .and_then(|s| s.chars().next())
        .map_or(('\u{FFFD}', 1), |c| (c, len))
}

// ---------------------------------------------------------------------------
// Go RE2 syntax → regex crate syntax

/// Translation of Go `regexp` syntax (Go 1.19, `syntax.Perl` flags) into an
/// equivalent pattern for the `regex` crate, returning `None` for anything Go
/// rejects. See the module documentation for the differences handled.
mod re2 {
    use regex::Regex;

    /// Compiles `pattern` as Go's `regexp.Compile` would; `None` when Go would
    /// fail (or when the translated pattern exceeds `regex`'s limits).
    pub(super) fn compile(pattern: &str) -> Option<Regex> {
        Regex::new(&translate(pattern)?).ok()
    }

    /// Go's maximum count in `x{n,m}`, also for products of nested counts.
    const MAX_REPEAT: u64 = 1000;

    /// A class that matches nothing: what a surrogate code point (which Go
    /// accepts in escapes) can match in UTF-8 text.
    const NOTHING: &str = r"[^\x{0}-\x{10FFFF}]";

    /// Every character.
    const ANYTHING: &str = r"[\x{0}-\x{10FFFF}]";

    /// Characters assigned in Unicode 13.0, the version of Go 1.19's tables.
    const UNICODE_13: &str = r"\p{Age=13.0}";

    /// Go 1.19's `unicode.Categories` keys.
    #[rustfmt::skip]
    const CATEGORIES: &[&str] = &[
        "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
        "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm",
        "So", "Z", "Zl", "Zp", "Zs",
    ];

    /// Go 1.19's `unicode.Scripts` keys (Unicode 13.0.0).
    #[rustfmt::skip]
    pub(super) const SCRIPTS: &[&str] = &[
        "Adlam", "Ahom", "Anatolian_Hieroglyphs", "Arabic", "Armenian", "Avestan", "Balinese",
        "Bamum", "Bassa_Vah", "Batak", "Bengali", "Bhaiksuki", "Bopomofo", "Brahmi", "Braille",
        "Buginese", "Buhid", "Canadian_Aboriginal", "Carian", "Caucasian_Albanian", "Chakma",
        "Cham", "Cherokee", "Chorasmian", "Common", "Coptic", "Cuneiform", "Cypriot", "Cyrillic",
        "Deseret", "Devanagari", "Dives_Akuru", "Dogra", "Duployan", "Egyptian_Hieroglyphs",
        "Elbasan", "Elymaic", "Ethiopic", "Georgian", "Glagolitic", "Gothic", "Grantha", "Greek",
        "Gujarati", "Gunjala_Gondi", "Gurmukhi", "Han", "Hangul", "Hanifi_Rohingya", "Hanunoo",
        "Hatran", "Hebrew", "Hiragana", "Imperial_Aramaic", "Inherited", "Inscriptional_Pahlavi",
        "Inscriptional_Parthian", "Javanese", "Kaithi", "Kannada", "Katakana", "Kayah_Li",
        "Kharoshthi", "Khitan_Small_Script", "Khmer", "Khojki", "Khudawadi", "Lao", "Latin",
        "Lepcha", "Limbu", "Linear_A", "Linear_B", "Lisu", "Lycian", "Lydian", "Mahajani",
        "Makasar", "Malayalam", "Mandaic", "Manichaean", "Marchen", "Masaram_Gondi", "Medefaidrin",
        "Meetei_Mayek", "Mende_Kikakui", "Meroitic_Cursive", "Meroitic_Hieroglyphs", "Miao", "Modi",
        "Mongolian", "Mro", "Multani", "Myanmar", "Nabataean", "Nandinagari", "New_Tai_Lue", "Newa",
        "Nko", "Nushu", "Nyiakeng_Puachue_Hmong", "Ogham", "Ol_Chiki", "Old_Hungarian",
        "Old_Italic", "Old_North_Arabian", "Old_Permic", "Old_Persian", "Old_Sogdian",
        "Old_South_Arabian", "Old_Turkic", "Oriya", "Osage", "Osmanya", "Pahawh_Hmong", "Palmyrene",
        "Pau_Cin_Hau", "Phags_Pa", "Phoenician", "Psalter_Pahlavi", "Rejang", "Runic", "Samaritan",
        "Saurashtra", "Sharada", "Shavian", "Siddham", "SignWriting", "Sinhala", "Sogdian",
        "Sora_Sompeng", "Soyombo", "Sundanese", "Syloti_Nagri", "Syriac", "Tagalog", "Tagbanwa",
        "Tai_Le", "Tai_Tham", "Tai_Viet", "Takri", "Tamil", "Tangut", "Telugu", "Thaana", "Thai",
        "Tibetan", "Tifinagh", "Tirhuta", "Ugaritic", "Vai", "Wancho", "Warang_Citi", "Yezidi",
        "Yi", "Zanabazar_Square",
    ];

    /// POSIX class names Go accepts inside brackets (all ASCII, same meaning
    /// in `regex`).
    const POSIX: &[&str] = &[
        "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
        "space", "upper", "word", "xdigit",
    ];

    /// The most recent operand in the current concatenation, i.e. what a
    /// following repetition operator applies to.
    struct Atom {
        /// Byte range of its text in the output.
        start: usize,
        end: usize,
        /// Largest product of counted repetitions nested in it (Go limits it).
        weight: u64,
        /// Already followed by a repetition operator.
        repeated: bool,
    }

    struct Group {
        start: usize,
        outer_weight: u64,
    }

    struct Translator {
        chars: Vec<char>,
        i: usize,
        out: String,
        groups: Vec<Group>,
        /// Largest atom weight seen in the current group.
        weight: u64,
        last: Option<Atom>,
        /// The previous token was a repetition operator (Go rejects `a**`).
        after_repeat: bool,
    }

    pub(super) fn translate(pattern: &str) -> Option<String> {
        let mut t = Translator {
            chars: pattern.chars().collect(),
            i: 0,
            out: String::with_capacity(pattern.len() * 2),
            groups: Vec::new(),
            weight: 1,
            last: None,
            after_repeat: false,
        };
        while t.i < t.chars.len() {
            t.after_repeat = t.step()?;
        }
        if !t.groups.is_empty() {
            return None; // missing closing )
        }
        Some(t.out)
    }

    impl Translator {
        fn at(&self, i: usize) -> Option<char> {
            self.chars.get(i).copied()
        }

        /// Translates one token; returns whether it was a repetition operator.
        fn step(&mut self) -> Option<bool> {
            let c = self.chars[self.i];
            match c {
                '(' if self.at(self.i + 1) == Some('?') => self.perl_group()?,
                '(' => {
                    self.i += 1;
                    self.open_group("(");
                }
                ')' => {
                    self.i += 1;
                    self.close_group()?;
                }
                '|' => {
                    self.i += 1;
                    self.flush();
                    self.out.push('|');
                }
                '^' | '$' | '.' => {
                    self.i += 1;
                    self.atom(&c.to_string());
                }
                '[' => {
                    let class = self.class()?;
                    self.atom(&class);
                }
                '*' | '+' | '?' => {
                    self.i += 1;
                    self.repeat(&c.to_string(), None)?;
                    return Some(true);
                }
                '{' => match self.counted_repeat() {
                    Some((min, max, next)) => {
                        if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || min > m) {
                            return None; // invalid repeat count
                        }
                        self.i = next;
                        let text = match max {
                            None => format!("{{{min},}}"),
                            Some(max) => format!("{{{min},{max}}}"),
                        };
                        self.repeat(&text, Some((min, max)))?;
                        return Some(true);
                    }
                    // Not a valid repetition: Go takes `{` literally.
                    None => {
                        self.i += 1;
                        self.literal(u32::from('{'));
                    }
                },
                '\\' => self.escape()?,
                _ => {
                    self.i += 1;
                    self.literal(u32::from(c));
                }
            }
            Some(false)
        }

        /// Folds the finished operand into the group's weight.
        fn flush(&mut self) {
            if let Some(atom) = self.last.take() {
                self.weight = self.weight.max(atom.weight);
            }
        }

        fn atom(&mut self, text: &str) {
            self.flush();
            let start = self.out.len();
            self.out.push_str(text);
            self.last = Some(Atom {
                start,
                end: self.out.len(),
                weight: 1,
                repeated: false,
            });
        }

        fn literal(&mut self, rune: u32) {
            let text = literal_text(rune);
            self.atom(&text);
        }

        fn open_group(&mut self, text: &str) {
            self.flush();
            self.groups.push(Group {
                start: self.out.len(),
                outer_weight: self.weight,
            });
            self.out.push_str(text);
            self.weight = 1;
        }

        fn close_group(&mut self) -> Option<()> {
            let group = self.groups.pop()?; // None: unexpected )
            self.flush();
            self.out.push(')');
            let weight = self.weight;
            self.weight = group.outer_weight;
            self.last = Some(Atom {
                start: group.start,
                end: self.out.len(),
                weight,
                repeated: false,
            });
            Some(())
        }

        /// Applies a repetition operator (`counts` for `{n,m}`) to the last
        /// operand. In Go a flag group such as `(?i)` pushes nothing, so the
        /// operator is inserted right after the operand, before such groups.
        fn repeat(&mut self, op: &str, counts: Option<(u64, Option<u64>)>) -> Option<()> {
            let mut op = op.to_owned();
            if self.at(self.i) == Some('?') {
                self.i += 1;
                op.push('?');
            }
            if self.after_repeat {
                return None; // invalid nested repetition operator
            }
            let atom = self.last.as_mut()?; // missing argument to repetition operator
            if let Some((min, max)) = counts {
                // Mirrors Go's repeatIsValid: the product of the counts of
                // nested `{n,m}` may not exceed 1000; `{0}` ends the chain.
                let weight = match max {
                    Some(0) => 1,
                    _ => match max.unwrap_or(min) {
                        0 => atom.weight,
                        m => m.saturating_mul(atom.weight),
                    },
                };
                let checked = min >= 2 || max.is_some_and(|m| m >= 2);
                if checked && weight > MAX_REPEAT {
                    return None;
                }
                atom.weight = weight;
            }
            if atom.repeated {
                // `x**` would be rejected by us and `x*{2}` parsed oddly by
                // the regex crate: group the repeated operand first.
                let wrapped_tail = format!("){op}");
                self.out.insert_str(atom.end, &wrapped_tail);
                self.out.insert_str(atom.start, "(?:");
                atom.end += 3 + wrapped_tail.len();
            } else {
                self.out.insert_str(atom.end, &op);
                atom.end += op.len();
            }
            atom.repeated = true;
            Some(())
        }

        /// Go's parseRepeat at `{`: `{n}`, `{n,}` or `{n,m}` with decimal
        /// numbers without leading zeros. `None` when not of that form.
        fn counted_repeat(&self) -> Option<(u64, Option<u64>, usize)> {
            let (min, mut j) = self.decimal(self.i + 1)?;
            let max = match self.at(j)? {
                ',' => {
                    j += 1;
                    if self.at(j)? == '}' {
                        None
                    } else {
                        let (max, next) = self.decimal(j)?;
                        j = next;
                        Some(max)
                    }
                }
                _ => Some(min),
            };
            (self.at(j)? == '}').then_some((min, max, j + 1))
        }

        fn decimal(&self, start: usize) -> Option<(u64, usize)> {
            let mut j = start;
            let mut value: u64 = 0;
            while let Some(d) = self.at(j).and_then(|c| c.to_digit(10)) {
                value = value.saturating_mul(10).saturating_add(u64::from(d));
                j += 1;
            }
            let digits = j - start;
            if digits == 0 || (digits > 1 && self.at(start) == Some('0')) {
                return None;
            }
            Some((value, j))
        }

        /// `(?` … : named capture `(?P<name>`, flags `(?imsU-imsU)` or a
        /// non-capturing group `(?flags:`.
        fn perl_group(&mut self) -> Option<()> {
            let i = self.i;
            if self.chars.len() > i + 4
                && self.at(i + 2) == Some('P')
                && self.at(i + 3) == Some('<')
            {
                let end = i + self.chars[i..].iter().position(|&c| c == '>')?;
                let name = &self.chars[i + 4..end];
                if name.is_empty() || !name.iter().all(|&c| c == '_' || c.is_ascii_alphanumeric()) {
                    return None;
                }
                // Names do not affect matching; Rust would reject duplicates
                // that Go accepts, so emit a plain group.
                self.i = end + 1;
                self.open_group("(");
                return Some(());
            }
            // Last setting of each flag wins, as Go applies them in order.
            let mut flags: [(char, Option<bool>); 4] =
                [('i', None), ('m', None), ('s', None), ('U', None)];
            let mut negated = false;
            let mut saw_flag = false;
            let mut j = i + 2;
            loop {
                let c = self.at(j)?;
                j += 1;
                match c {
                    'i' | 'm' | 's' | 'U' => {
                        for flag in flags.iter_mut().filter(|f| f.0 == c) {
                            flag.1 = Some(!negated);
                        }
                        saw_flag = true;
                    }
                    '-' if !negated => {
                        negated = true;
                        saw_flag = false;
                    }
                    ':' | ')' => {
                        if negated && !saw_flag {
                            return None;
                        }
                        let set: String = flags
                            .iter()
                            .filter(|f| f.1 == Some(true))
                            .map(|f| f.0)
                            .collect();
                        let clear: String = flags
                            .iter()
                            .filter(|f| f.1 == Some(false))
                            .map(|f| f.0)
                            .collect();
                        let mut spec = set;
                        if !clear.is_empty() {
                            spec.push('-');
                            spec.push_str(&clear);
                        }
                        self.i = j;
                        if c == ':' {
                            self.open_group(&format!("(?{spec}:"));
                        } else if !spec.is_empty() {
                            // Changes flags without creating an operand.
                            self.out.push_str(&format!("(?{spec})"));
                        }
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        fn escape(&mut self) -> Option<()> {
            let i = self.i;
            match self.at(i + 1)? {
                'A' => self.special_atom(r"\A"),
                'z' => self.special_atom(r"\z"),
                // Go's word boundaries are ASCII-only.
                'b' => self.special_atom(r"(?-u:\b)"),
                'B' => self.special_atom(r"(?-u:\B)"),
                'C' => return None,
                'Q' => {
                    let body = i + 2;
                    let close = (body..self.chars.len())
                        .find(|&k| self.chars[k] == '\\' && self.at(k + 1) == Some('E'));
                    let literal_end = close.unwrap_or(self.chars.len());
                    for k in body..literal_end {
                        let c = self.chars[k];
                        self.literal(u32::from(c));
                    }
                    self.i = close.map_or(literal_end, |k| k + 2);
                }
                'p' | 'P' => {
                    let (text, next) = self.unicode_class(i)?;
                    self.i = next;
                    self.atom(&text);
                }
                c @ ('d' | 'D' | 's' | 'S' | 'w' | 'W') => {
                    self.i = i + 2;
                    self.atom(perl_class(c));
                }
                _ => {
                    let (rune, next) = self.single_escape(i)?;
                    self.i = next;
                    self.literal(rune);
                }
            }
            Some(())
        }

        fn special_atom(&mut self, text: &str) {
            self.i += 2;
            self.atom(text);
        }

        /// Go's parseEscape at a backslash: one character, or `None`.
        fn single_escape(&self, i: usize) -> Option<(u32, usize)> {
            let c = self.at(i + 1)?;
            let mut j = i + 2;
            let rune = match c {
                '1'..='7' | '0' => {
                    // A lone non-zero digit would be a backreference.
                    if c != '0' && !matches!(self.at(j), Some('0'..='7')) {
                        return None;
                    }
                    let mut v = c.to_digit(8)?;
                    for _ in 1..3 {
                        match self.at(j).and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                v = v * 8 + d;
                                j += 1;
                            }
                            None => break,
                        }
                    }
                    v
                }
                'x' => {
                    let first = self.at(j)?;
                    j += 1;
                    if first == '{' {
                        let mut v: u32 = 0;
                        let mut digits = 0;
                        loop {
                            let d = self.at(j)?;
                            j += 1;
                            if d == '}' {
                                break;
                            }
                            v = v * 16 + d.to_digit(16)?;
                            if v > 0x10FFFF {
                                return None;
                            }
                            digits += 1;
                        }
                        if digits == 0 {
                            return None;
                        }
                        v
                    } else {
                        let hi = first.to_digit(16)?;
                        let lo = self.at(j)?.to_digit(16)?;
                        j += 1;
                        hi * 16 + lo
                    }
                }
                'a' => 0x07,
                'f' => 0x0c,
                'n' => 0x0a,
                'r' => 0x0d,
                't' => 0x09,
                'v' => 0x0b,
                c if c.is_ascii() && !c.is_ascii_alphanumeric() => u32::from(c),
                _ => return None,
            };
            Some((rune, j))
        }

        /// `\pX`, `\p{Name}`, `\p{^Name}`, `\P…` at a backslash; returns the
        /// translated class and the offset after it.
        fn unicode_class(&self, i: usize) -> Option<(String, usize)> {
            let mut negated = self.at(i + 1)? == 'P';
            let (mut name, next): (String, usize) = match self.at(i + 2)? {
                '{' => {
                    let close = i + 2 + self.chars[i + 2..].iter().position(|&c| c == '}')?;
                    (self.chars[i + 3..close].iter().collect(), close + 1)
                }
                c => (c.to_string(), i + 3),
            };
            if let Some(stripped) = name.strip_prefix('^') {
                negated = !negated;
                name = stripped.to_owned();
            }
            let known = name == "Any"
                || CATEGORIES.contains(&name.as_str())
                || SCRIPTS.contains(&name.as_str());
            if !known {
                return None;
            }
            // Go's tables are Unicode 13: characters assigned since are in no
            // category or script there.
            let class = match name.as_str() {
                "Any" => return Some((if negated { NOTHING } else { ANYTHING }.to_owned(), next)),
                // Surrogates: nothing in UTF-8 text (the regex crate has no Cs).
                "Cs" => return Some((if negated { ANYTHING } else { NOTHING }.to_owned(), next)),
                // Go's C is Cc|Cf|Co|Cs; the regex crate's also has Cn.
                "C" => r"[\p{Cc}\p{Cf}\p{Co}]".to_owned(),
                _ => format!(r"\p{{{name}}}"),
            };
            let caret = if negated { "^" } else { "" };
            Some((format!(r"[{caret}[{class}&&{UNICODE_13}]]"), next))
        }

        /// Go's parseClass at `[`: every item is re-emitted in a form the regex
        /// crate reads the same way (characters as `\x{..}`, so `[`, `&&`, `--`
        /// and `~~` lose their special meaning there).
        fn class(&mut self) -> Option<String> {
            let mut j = self.i + 1;
            let mut out = String::from("[");
            if self.at(j) == Some('^') {
                out.push('^');
                j += 1;
            }
            let mut first = true;
            loop {
                let c = self.at(j)?; // missing closing ]
                if c == ']' && !first {
                    j += 1;
                    break;
                }
                first = false;
                if c == '[' && self.at(j + 1) == Some(':') && self.chars.len() - j > 2 {
                    let close = (j + 2..self.chars.len().saturating_sub(1))
                        .find(|&k| self.chars[k] == ':' && self.chars[k + 1] == ']');
                    if let Some(close) = close {
                        let name: String = self.chars[j + 2..close].iter().collect();
                        let bare = name.strip_prefix('^').unwrap_or(&name);
                        if !POSIX.contains(&bare) {
                            return None; // invalid character class range
                        }
                        out.push_str(&format!("[:{name}:]"));
                        j = close + 2;
                        continue;
                    }
                }
                if c == '\\' {
                    match self.at(j + 1) {
                        Some('p' | 'P') => {
                            let (text, next) = self.unicode_class(j)?;
                            out.push_str(&text);
                            j = next;
                            continue;
                        }
                        Some(p @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                            out.push_str(perl_class(p));
                            j += 2;
                            continue;
                        }
                        _ => {}
                    }
                }
                let (lo, next) = self.class_char(j)?;
                j = next;
                let mut hi = lo;
                if self.at(j) == Some('-') && self.at(j + 1).is_some_and(|c| c != ']') {
                    let (end, next) = self.class_char(j + 1)?;
                    if end < lo {
                        return None;
                    }
                    hi = end;
                    j = next;
                }
                out.push_str(&class_range(lo, hi));
            }
            out.push(']');
            self.i = j;
            Some(out)
        }

        fn class_char(&self, j: usize) -> Option<(u32, usize)> {
            match self.at(j)? {
                '\\' => self.single_escape(j),
                c => Some((u32::from(c), j + 1)),
            }
        }
    }

    /// Go's Perl classes, which are ASCII-only.
    fn perl_class(c: char) -> &'static str {
        match c {
            'd' => "[0-9]",
            'D' => "[^0-9]",
            's' => r"[\t\n\f\r ]",
            'S' => r"[^\t\n\f\r ]",
            'w' => "[0-9A-Za-z_]",
            _ => "[^0-9A-Za-z_]",
        }
    }

    fn literal_text(rune: u32) -> String {
        match char::from_u32(rune) {
            Some(c) if c.is_ascii_alphanumeric() => c.to_string(),
            Some(c) => format!(r"\x{{{:X}}}", u32::from(c)),
            None => NOTHING.to_owned(),
        }
    }

    /// A class item for `lo..=hi`, leaving out surrogates (Go allows them in
    /// ranges; they can never match UTF-8 text).
    fn class_range(lo: u32, hi: u32) -> String {
        let lo = if (0xD800..=0xDFFF).contains(&lo) {
            0xE000
        } else {
            lo
        };
        let hi = if (0xD800..=0xDFFF).contains(&hi) {
            0xD7FF
        } else {
            hi
        };
        if lo > hi {
            NOTHING.to_owned()
        } else if lo == hi {
            format!(r"\x{{{lo:X}}}")
        } else {
            format!(r"\x{{{lo:X}}}-\x{{{hi:X}}}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A container as containerd's metadata adaptor sees it.
    struct Container {
        id: &'static str,
        image: &'static str,
        runtime: &'static str,
        labels: BTreeMap<&'static str, &'static str>,
    }

    fn non_empty(v: &str) -> Option<Cow<'_, str>> {
        (!v.is_empty()).then_some(Cow::Borrowed(v))
    }

    impl Adaptor for Container {
        fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
            match path.first()?.as_str() {
                "id" => non_empty(self.id),
                "image" => non_empty(self.image),
                "runtime" if path.get(1)? == "name" => non_empty(self.runtime),
                "labels" => self
                    .labels
                    .get(path[1..].join(".").as_str())
                    .map(|v| Cow::Borrowed(*v)),
                _ => None,
            }
        }
    }

    /// The spec §7 fixtures.
    fn fixtures() -> Vec<Container> {
        vec![
            Container {
                id: "f1",
                image: "busybox",
                runtime: "io.containerd.runc.v2",
                labels: [("env", "prod"), ("io.x/y", "a b"), ("app.name", "web")].into(),
            },
            Container {
                id: "f2",
                image: "",
                runtime: "runsc",
                labels: [("env", "dev")].into(),
            },
            Container {
                id: "f3",
                image: "alpine:3",
                runtime: "io.containerd.runc.v2",
                labels: BTreeMap::new(),
            },
        ]
    }

    /// A container with awkward values, for lexing tests.
    fn odd() -> Container {
        Container {
            id: "x-1",
            image: "docker.io/library/busybox:latest",
            runtime: "io.containerd.runc.v2",
            labels: [
                ("a\"b", "q"),
                ("k", ""),
                ("é", "ü"),
                ("x,y", "1,2"),
                ("nul", "a\0b"),
                ("esc", "\u{7}\u{8}\u{c}\n\r\t\u{b}\\\""),
                ("pct", "100%"),
                ("eq", "a=b"),
            ]
            .into(),
        }
    }

    fn parse(filters: &[&str]) -> FilterSet {
        match FilterSet::parse(filters) {
            Ok(set) => set,
            Err(e) => panic!("{filters:?} should parse: {e}"),
        }
    }

    fn matching(filters: &[&str]) -> Vec<&'static str> {
        let set = parse(filters);
        fixtures()
            .into_iter()
            .filter(|c| set.matches(c))
            .map(|c| c.id)
            .collect()
    }

    fn error(filter: &str) -> String {
        match FilterSet::parse(&[filter]) {
            Ok(_) => panic!("{filter:?} should not parse"),
            Err(e) => e.to_string(),
        }
    }

    #[track_caller]
    fn check(cases: &[(&[&str], &[&str])]) {
        for (filters, want) in cases {
            assert_eq!(matching(filters), *want, "filters {filters:?}");
        }
    }

    #[test]
    fn spec_examples() {
        check(&[
            (&["labels.env"], &["f1", "f2"]),
            (&["labels.env!=prod"], &["f2", "f3"]),
            (&["image"], &["f1", "f3"]),
            (&["labels.app.name==web"], &["f1"]),
            (&[r#"labels."io.x/y"=="a b""#], &["f1"]),
            (&["runtime.name~=runsc"], &["f2"]),
            (&["id~=^f[12]$"], &["f1", "f2"]),
            (&["labels.env==prod,image~=busybox"], &["f1"]),
            (&["id==f1", "id==f2"], &["f1", "f2"]),
            (&["snapshotter==x"], &[]),
        ]);
    }

    #[test]
    fn selectors_and_or() {
        check(&[
            (&["id==f1"], &["f1"]),
            (&["id==f1,id==f2"], &[]),
            (&["id==f1,labels.env==prod"], &["f1"]),
            (&["id==f1,labels.env==dev"], &[]),
            (&["id==f1,labels.env==dev", "image==alpine:3"], &["f3"]),
            (&["id!=f1,id!=f2"], &["f3"]),
            (&["id", "image"], &["f1", "f2", "f3"]),
            (&["labels.env", "image"], &["f1", "f2", "f3"]),
            (&["labels.env,image"], &["f1"]),
            // The same selector twice is fine.
            (&["id==f2,id==f2"], &["f2"]),
        ]);
    }

    #[test]
    fn field_lexing() {
        check(&[
            // Case-sensitive names.
            (&["ID==f1"], &[]),
            (&["Labels.env"], &[]),
            (&["labels.ENV"], &[]),
            // Quoted components, joined by the adaptor with '.'.
            (&[r#"labels."io.x/y""#], &["f1"]),
            (&[r#"labels."app"."name"==web"#], &["f1"]),
            (&[r#"labels."app.name"==web"#], &["f1"]),
            (&[r#""labels"."env"==dev"#], &["f2"]),
            (&[r#"labels."\x65nv"==dev"#], &["f2"]),
            // Fields may start with a digit or '_' (and are then just absent).
            (&["9lives"], &[]),
            (&["_x!=y"], &["f1", "f2", "f3"]),
            // White space before a field or after a '.' is skipped.
            (&[" id==f1"], &["f1"]),
            (&["labels. env==dev"], &["f2"]),
            (&["id==f3,\t labels.env"], &[]),
            (&["id==f1, labels.env"], &["f1"]),
        ]);
        let odd = odd();
        let hits = |f: &str| parse(&[f]).matches(&odd);
        assert!(hits(r#"labels."a\"b"==q"#));
        assert!(hits(r#"labels."é"=="ü""#));
        assert!(hits("labels.k"), "a label with an empty value is present");
        assert!(hits("labels.k==\"\""));
        assert!(hits(r#"labels."x,y"=="1,2""#));
        assert!(!hits(r#"labels."x,y"==1,2"#), "bare value stops at ','");
    }

    #[test]
    fn value_lexing() {
        let odd = odd();
        let hits = |f: &str| parse(&[f]).matches(&odd);
        // Bare values run to ',' or white space and may contain . / : " = ! ~
        assert!(hits("image==docker.io/library/busybox:latest"));
        assert!(hits("image==docker.io/library/busybox:latest,id==x-1"));
        assert!(!hits("image==docker.io/library/busybox"));
        assert!(hits("labels.eq==a=b"));
        // é is not a field character, but a bare value may hold any graphic one.
        assert!(error("labels.é==ü").ends_with("expected field or quoted"));
        assert!(hits(r#"labels."é"==ü"#));
        assert!(hits(r#"id==x-1,labels."a\"b"==q"#));
        // White space before the value is skipped.
        assert!(hits("id== x-1"));
        assert!(hits("id ==x-1"));
        assert!(hits("id\t==\tx-1"));
        // A ',' inside a bare value splits selectors.
        check(&[
            (&["labels.env==pr,od"], &[]),
            (&["labels.env==pr,id"], &[]),
            (&["labels.env==prod,id"], &["f1"]),
        ]);
        // A bare value may contain a quote after its first character.
        let set = parse(&[r#"id==a"b"#]);
        assert!(set.matches(&Container { id: "a\"b", ..odd }));
    }

    #[test]
    fn quoted_values_and_escapes() {
        let odd = odd();
        let hits = |f: &str| parse(&[f]).matches(&odd);
        assert!(hits(r#"labels.esc=="\a\b\f\n\r\t\v\\\"""#));
        assert!(hits(r#"labels.nul=="a\x00b""#));
        assert!(hits(r#"labels.nul=="a\000b""#));
        assert!(hits(r#"labels."é"=="\u00fc""#));
        assert!(hits(r#"labels."é"=="\U000000fc""#));
        // \x and octal escapes are bytes: together they can spell UTF-8.
        assert!(hits(r#"labels."é"=="\xc3\xbc""#));
        assert!(hits(r#"labels."é"=="\303\274""#));
        assert!(hits(r#"labels."\xc3\xa9"==ü"#));
        assert!(hits(r#"labels.pct=="100%""#));
        assert!(hits(r#"labels.pct==100%"#));
        // Bytes that are not UTF-8 equal nothing, so != always holds.
        assert!(!hits(r#"labels."é"=="\xfc""#));
        assert!(hits(r#"labels."é"!="\xfc""#));
        assert!(!hits(r#"labels."\xe9""#));
        assert!(
            hits(r#"labels."\xe9"!=x"#),
            "an undecodable field is absent"
        );
        // A surrogate escape decodes to U+FFFD, as in Go.
        let set = parse(&[r#"id=="\ud800""#]);
        assert!(set.matches(&Container {
            id: "\u{FFFD}",
            ..odd
        }));
    }

    #[test]
    fn operators() {
        check(&[
            (&["id==f2"], &["f2"]),
            (&["id!=f2"], &["f1", "f3"]),
            (&["id~=2"], &["f2"]),
            (&["id~=f"], &["f1", "f2", "f3"]),
            // An explicit empty value.
            (&["image==\"\""], &[]),
            (&["image!=\"\""], &["f1", "f3"]),
            // Absent fields compare as "" for != and ~=.
            (&["image!=busybox"], &["f2", "f3"]),
            (&["nothing!=x"], &["f1", "f2", "f3"]),
            (&["nothing!=\"\""], &[]),
            (&["image~=^$"], &["f2"]),
            (&["nothing==x"], &[]),
        ]);
        assert_eq!(
            error("id=f1"),
            r#"filters: parse error: [id >|=|< f1]: unsupported operator "=""#
        );
        assert_eq!(
            error("id===f1"),
            r#"filters: parse error: [id >|=|< ==f1]: unsupported operator "===""#
        );
        assert_eq!(
            error("id==!x"),
            r#"filters: parse error: [id >|=|< =!x]: unsupported operator "==!""#
        );
        assert_eq!(
            error("id=="),
            "filters: parse error: [id==]: expected value or quoted"
        );
        assert_eq!(
            error("id!="),
            "filters: parse error: [id!=]: expected value or quoted"
        );
    }

    #[test]
    fn regular_expressions() {
        check(&[
            // Unanchored search.
            (&["runtime.name~=runc"], &["f1", "f3"]),
            (&["runtime.name~=^runc"], &[]),
            (&["image~=box$"], &["f1"]),
            // All three quote characters after ~=.
            (&["id~=/f[13]/"], &["f1", "f3"]),
            (&["id~=|f3|"], &["f3"]),
            (&[r#"id~="f[12]""#], &["f1", "f2"]),
            (&[r"id~=/^f\/?1$/"], &["f1"]),
            (&[r"id~=|^(f1\|f3)$|"], &["f1", "f3"]),
            // Invalid expressions are no parse error; they match nothing,
            // not even with != elsewhere in the same filter.
            (&["id~=("], &[]),
            (&["id~=a**"], &[]),
            (&["id~=(", "id==f3"], &["f3"]),
            // Empty expression matches everything, present or not.
            (&["image~=\"\""], &["f1", "f2", "f3"]),
            // Flags.
            (&["id~=(?i)F1"], &["f1"]),
            (&["id~=F1"], &[]),
        ]);
        // Whether label v = `v` matches `labels.v<op_and_value>`.
        let value = |v: &'static str, op_and_value: &str| {
            let target = Container {
                id: "x",
                image: "",
                runtime: "",
                labels: [("v", v)].into(),
            };
            parse(&[&format!("labels.v{op_and_value}")]).matches(&target)
        };
        // Go's \d \w \s \b are ASCII-only.
        assert!(value("42", r"~=^\d+$"));
        assert!(!value("٤٢", r"~=^\d+$"));
        assert!(!value("café", r"~=^\w+$"));
        assert!(value("cafe", r"~=^\w+$"));
        assert!(!value("\u{b}", r#"~="\\s""#));
        assert!(value("a\tb", r#"~="a\\sb""#));
        assert!(!value("é", r"~=^\b"), "no word boundary before é in Go");
        assert!(value("e", r"~=^\b"));
        // Go accepts what Rust would not, and the reverse.
        assert!(value("a{", r"~=a{"));
        assert!(value("{,5}", r#"~="^{,5}$""#));
        assert!(value("aa", r"~=^a(?i)*$"));
        assert!(value("ab", r"~=a\Q\E(?ii)B"));
        assert!(value("a.b", r"~=^\Qa.b\E$"));
        assert!(!value("axb", r"~=^\Qa.b\E$"));
        assert!(value("[", r"~=[[]"));
        assert!(value("&", r"~=[a&&b]"));
        assert!(value("Δ", r"~=\p{^Latin}"));
        assert!(!value("a", r"~=(?x)a"));
        assert!(!value("a", r"~=(?<n>a)"));
        assert!(!value("a", r"~=\<a"));
        assert!(!value("aaa", r"~=(a{100}){11}"));
        assert!(value("aaa", r"~=(a{100}){10}|^"));
        assert!(!value("a", r"~=a{1001}|^"));
        // Go's \p{C} has no unassigned code points; U+0378 is unassigned.
        assert!(!value("\u{378}", r"~=\p{C}"));
        assert!(value("\u{7f}", r"~=\p{C}"));
    }

    #[test]
    fn every_go_script_name_translates() {
        for name in re2::SCRIPTS {
            let pattern = format!(r"\p{{{name}}}|[\P{{^{name}}}]");
            assert!(re2::compile(&pattern).is_some(), "{pattern}");
        }
        assert!(re2::compile(r"\p{Greek}").is_some());
        assert!(
            re2::compile(r"\p{greek}").is_none(),
            "Go 1.19 names are exact"
        );
        assert!(re2::compile(r"\p{Letter}").is_none());
        assert!(re2::compile(r"\p{Vithkuqi}").is_none(), "Unicode 14 script");
    }

    #[test]
    fn white_space_rules() {
        check(&[
            (&["id == f1"], &["f1"]),
            (&[" id==f1"], &["f1"]),
            (&["labels.env==dev, image"], &[]),
            (&["labels.env==prod, image"], &["f1"]),
        ]);
        let cases = [
            (
                "id==f1 ",
                "filters: parse error: [id==f1 >| |< ]: unexpected input:  ",
            ),
            (
                "id ",
                r#"filters: parse error: [id ]: expected an operator ("=="|"!="|"~=")"#,
            ),
            (
                "id ,x",
                r#"filters: parse error: [id  >|,|< x]: expected an operator ("=="|"!="|"~=")"#,
            ),
            (
                "labels .env",
                r#"filters: parse error: [labels  >|.|< env]: expected an operator ("=="|"!="|"~=")"#,
            ),
            (
                "id==f1 ,x",
                "filters: parse error: [id==f1 >| |< ,x]: unexpected input:  ",
            ),
            (
                "id==f1,",
                "filters: parse error: [id==f1,]: expected field or quoted",
            ),
            (
                "id== ",
                "filters: parse error: [id== ]: expected value or quoted",
            ),
            (" ", "filters: parse error: [ ]: expected field or quoted"),
            (
                "id==f1\n",
                "filters: parse error: [id==f1 >|\n|< ]: unexpected input: \n",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(error(input), want, "{input:?}");
        }
    }

    /// Messages produced by containerd 1.6.20's `filters.Parse` (checked
    /// against the Go package).
    #[test]
    fn parse_error_messages() {
        let cases = [
            // From containerd's own tests.
            (
                "labels.|foo|==omg",
                "[labels. >|||< foo|==omg]: invalid quote encountered",
            ),
            (
                r#"labels.?"x""#,
                r#"[labels. >|?|< "x"]: expected field or quoted"#,
            ),
            ("name==foo,", "[name==foo,]: expected field or quoted"),
            ("labels.", "[labels.]: expected field or quoted"),
            (
                "image~=,id?=?fbaq",
                "[image~= >|,|< id?=?fbaq]: expected value or quoted",
            ),
            (
                "labels.ns/key==value",
                "[labels.ns >|/|< key==value]: quoted literal not terminated",
            ),
            (
                "labels.key==/value",
                "[labels.key== >|/|< value]: quoted literal not terminated",
            ),
            // Grammar.
            ("id==f1,,x", "[id==f1, >|,|< x]: expected field or quoted"),
            (",id", "[ >|,|< id]: expected field or quoted"),
            (".id", "[ >|.|< id]: expected field or quoted"),
            ("==x", "[ >|=|< =x]: expected field or quoted"),
            (
                "a b",
                r#"[a  >|b|< ]: expected an operator ("=="|"!="|"~=")"#,
            ),
            (
                r#"a"b""#,
                r#"[a >|"|< b"]: expected an operator ("=="|"!="|"~=")"#,
            ),
            (
                "a/b/",
                r#"[a >|/|< b/]: expected an operator ("=="|"!="|"~=")"#,
            ),
            ("id==,x", "[id== >|,|< x]: expected value or quoted"),
            ("id== ==x", "[id==  >|=|< =x]: expected value or quoted"),
            (r#"id=="f1"x"#, "[id==\"f1\" >|x|< ]: unexpected input: x"),
            ("id~=\\d\t", "[id~=\\d >|\t|< ]: unexpected input: \t"),
            // Quotes.
            ("id==|f1|", "[id== >|||< f1|]: invalid quote encountered"),
            ("id==/f1/", "[id== >|/|< f1/]: invalid quote encountered"),
            ("id~=/f1", "[id~= >|/|< f1]: quoted literal not terminated"),
            (
                r#"id=="f1"#,
                r#"[id== >|"|< f1]: quoted literal not terminated"#,
            ),
            (
                "id==\"a\n\"",
                "[id== >|\"|< a\n\"]: quoted literal not terminated",
            ),
            (
                r#"id=="a\qb""#,
                r#"[id== >|"|< a\qb"]: illegal escape sequence"#,
            ),
            (r#""\"#, r#"[ >|"|< \]: illegal escape sequence"#),
            (
                r#"id=="\x4""#,
                r#"[id== >|"|< \x4"]: illegal numeric escape sequence"#,
            ),
            (
                r#"id=="\400""#,
                r#"[id== >|"|< \400"]: unquoting failed: quote syntax error"#,
            ),
            (
                r#"id=="\U00110000""#,
                r#"[id== >|"|< \U00110000"]: unquoting failed: quote syntax error"#,
            ),
            // Characters Go's decoder rejects.
            ("id\0", "[id >|\0|< ]: unexpected null"),
            ("id==\0", "[id== >|\0|< ]: unexpected null"),
            ("id==\"a\0\"", "[id== >|\"|< a\0\"]: unexpected null"),
            ("id==\"\u{FFFD}\"", "[id== >|\"|< \u{FFFD}\"]: rune error"),
            // The marker holds one byte of a multi-byte character.
            ("\u{FFFD}", "[ >|\u{FFFD}|< \u{FFFD}\u{FFFD}]: rune error"),
            (
                "labels.é",
                "[labels. >|\u{FFFD}|< \u{FFFD}]: expected field or quoted",
            ),
            // U+0378 is unassigned (not graphic), so it ends the bare value.
            (
                "id==a\u{378}",
                "[id==a >|\u{FFFD}|< \u{FFFD}]: unexpected input: \u{378}",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                error(input),
                format!("filters: parse error: {want}"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn parse_error_accessors() {
        let Err(e) = FilterSet::parse(&["id==f1", "labels.?x"]) else {
            panic!("must fail")
        };
        assert_eq!(e.input(), "labels.?x");
        assert_eq!(e.position(), Some(7));
        assert_eq!(e.reason(), "expected field or quoted");
        let Err(e) = FilterSet::parse(&["id=="]) else {
            panic!("must fail")
        };
        assert_eq!(e.position(), None);
        // The first bad filter is reported, even after an empty one.
        let Err(e) = FilterSet::parse(&["", "a=b", "c=d"]) else {
            panic!("must fail")
        };
        assert_eq!(e.input(), "a=b");
    }

    #[test]
    fn grpc_status_messages() {
        let err = |f: &str| match FilterSet::parse(&[f]) {
            Err(e) => e,
            Ok(_) => panic!("{f:?} should fail"),
        };
        let e = err("labels.|foo|==x");
        assert_eq!(
            e.containerd_message(),
            "filters: parse error: [labels. >|||< foo|==x]: invalid quote encountered: invalid argument: invalid argument"
        );
        assert_eq!(
            e.subscribe_message(),
            "subscription error: failed parsing subscription filters: filters: parse error: [labels. >|||< foo|==x]: invalid quote encountered: invalid argument"
        );
        // containerd formats List errors with the message as format string.
        let e = err("a%b");
        assert_eq!(
            e.to_string(),
            r#"filters: parse error: [a >|%|< b]: expected an operator ("=="|"!="|"~=")"#
        );
        assert_eq!(
            e.containerd_message(),
            r#"filters: parse error: [a >|%!|(MISSING)< b]: expected an operator ("=="|"!="|"~="): invalid argument: invalid argument"#
        );
        assert_eq!(
            e.subscribe_message(),
            r#"subscription error: failed parsing subscription filters: filters: parse error: [a >|%|< b]: expected an operator ("=="|"!="|"~="): invalid argument"#
        );
        assert_eq!(
            err("id==f1%d ").containerd_message(),
            "filters: parse error: [id==f1%!d(MISSING) >| |< ]: unexpected input:  : invalid argument: invalid argument"
        );
        assert_eq!(
            err("labels.é").containerd_message(),
            "filters: parse error: [labels. >|\u{FFFD}|< \u{FFFD}]: expected field or quoted: invalid argument: invalid argument"
        );
    }

    #[test]
    fn go_fmt_without_arguments() {
        let f = |s: &str| grpc_text(&go_sprintf_without_args(s.as_bytes()));
        assert_eq!(f("plain"), "plain");
        assert_eq!(f("100%%"), "100%");
        assert_eq!(f("%d"), "%!d(MISSING)");
        assert_eq!(f("%"), "%!(NOVERB)");
        assert_eq!(f("a%-+# 05.2fb"), "a%!f(MISSING)b");
        assert_eq!(f("%*d"), "%!(BADWIDTH)%!d(MISSING)");
        assert_eq!(f("%.*d"), "%!(BADPREC)%!d(MISSING)");
        assert_eq!(f("%[1]d"), "%!d(BADINDEX)");
        assert_eq!(f("%[x]d"), "%!d(BADINDEX)");
        assert_eq!(f("%5%"), "%");
        assert_eq!(f("%é"), "%!é(MISSING)");
        assert_eq!(f("%."), "%!.(MISSING)");
        assert_eq!(f("%99999999d!"), "%!(NOVERB)");
        assert_eq!(f("%1000000d"), "%!d(MISSING)");
    }

    /// An events envelope as containerd's exchange adapts it (spec §8).
    struct Envelope {
        namespace: &'static str,
        topic: &'static str,
        event: Event,
    }

    enum Event {
        Create {
            id: &'static str,
            image: &'static str,
        },
        Update {
            id: &'static str,
            labels: BTreeMap<&'static str, &'static str>,
        },
        Delete {
            id: &'static str,
        },
    }

    impl Adaptor for Envelope {
        fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
            let (first, rest) = path.split_first()?;
            match first.as_str() {
                "namespace" => non_empty(self.namespace),
                "topic" => non_empty(self.topic),
                "event" => {
                    let (name, rest) = rest.split_first()?;
                    match (&self.event, name.as_str()) {
                        (
                            Event::Create { id, .. }
                            | Event::Update { id, .. }
                            | Event::Delete { id },
                            "id",
                        ) => non_empty(id),
                        (Event::Create { image, .. }, "image") => non_empty(image),
                        (Event::Update { labels, .. }, "labels") => labels
                            .get(rest.join(".").as_str())
                            .map(|v| Cow::Borrowed(*v)),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
    }

    #[test]
    fn events_fields() {
        let envelopes = [
            Envelope {
                namespace: "evt",
                topic: "/containers/create",
                event: Event::Create {
                    id: "e1",
                    image: "img",
                },
            },
            Envelope {
                namespace: "evt",
                topic: "/containers/update",
                event: Event::Update {
                    id: "e1",
                    labels: [("a", "b")].into(),
                },
            },
            Envelope {
                namespace: "other",
                topic: "/containers/delete",
                event: Event::Delete { id: "e2" },
            },
        ];
        let hits = |filters: &[&str]| -> Vec<usize> {
            let set = parse(filters);
            (0..envelopes.len())
                .filter(|&i| set.matches(&envelopes[i]))
                .collect()
        };
        assert_eq!(hits(&[r#"namespace==evt,topic~="^/containers/""#]), [0, 1]);
        assert_eq!(hits(&[r#"topic=="/containers/delete""#]), [2]);
        assert_eq!(hits(&["event.id==e1"]), [0, 1]);
        assert_eq!(hits(&["event.id==e2", "event.image"]), [0, 2]);
        assert_eq!(hits(&["event.labels.a==b"]), [1]);
        assert_eq!(hits(&["namespace!=evt"]), [2]);
        assert_eq!(hits(&["topic~=/delete$/"]), [2]);
        assert_eq!(hits(&["Namespace==evt"]), [] as [usize; 0]);
        assert_eq!(hits(&[]), [0, 1, 2]);
        // A bare value cannot start with '/'.
        assert_eq!(
            error("topic==/containers/create"),
            "filters: parse error: [topic== >|/|< containers/create]: invalid quote encountered"
        );
    }

    #[test]
    fn matches_all() {
        let empty: [&str; 0] = [];
        assert!(parse(&empty).matches_all());
        assert!(parse(&[""]).matches_all());
        assert!(parse(&["id==nope", ""]).matches_all());
        assert!(parse(&["", "id==nope"]).matches_all());
        assert!(FilterSet::default().matches_all());
        assert!(!parse(&["id==nope"]).matches_all());
        assert!(!parse(&["id==nope", "labels.x"]).matches_all());
        check(&[
            (&[], &["f1", "f2", "f3"]),
            (&[""], &["f1", "f2", "f3"]),
            (&["id==nope", ""], &["f1", "f2", "f3"]),
            (&["id==nope"], &[]),
        ]);
        // An empty filter does not hide a bad one.
        assert!(FilterSet::parse(&["", "id=x"]).is_err());
    }

    #[test]
    fn never_panics() {
        let pieces = [
            "",
            "id",
            "labels",
            ".",
            ",",
            "==",
            "!=",
            "~=",
            "=",
            "!",
            "~",
            "\"",
            "/",
            "|",
            "'",
            "\\",
            "\\x",
            "\\u12",
            "\\U0010FFFF",
            "\\777",
            " ",
            "\t",
            "\n",
            "\0",
            "\u{FFFD}",
            "é",
            "日本",
            "🫠",
            "\u{378}",
            "\u{200B}",
            "\u{2028}",
            "%",
            "%d",
            "[",
            "(",
            "*",
            "{1001}",
            "\\p{",
            "\\Q",
            "(?P<",
            "\u{10FFFF}",
        ];
        let fixtures = fixtures();
        let mut n = 0usize;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let input = format!("{a}{b}{c}");
                    n += 1;
                    match FilterSet::parse(&[input.as_str()]) {
                        Ok(set) => {
                            for f in &fixtures {
                                set.matches(f);
                            }
                        }
                        Err(e) => {
                            assert!(e.position().is_none_or(|p| p < input.len()));
                            let _ = (e.to_string(), e.containerd_message(), e.subscribe_message());
                        }
                    }
                    let _ = re2::translate(&input);
                    let _ = unquote(&format!("\"{input}\""));
                    let _ = go_sprintf_without_args(input.as_bytes());
                }
            }
        }
        assert_eq!(n, pieces.len().pow(3));
    }
}
