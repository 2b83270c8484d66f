//! Logs: structured JSON for the Lambda functions, text for `doorbell dev` and the other CLI
//! commands. Both escape every character a request could use to forge a line or drive a
//! terminal, in every field and in the message, at the formatter (never at a call site).
//!
//! JSON ([`json_subscriber`]): one object per line: `{"level":"WARN","fields":{"message":
//! "rejected","source":…,"metric":"SignatureRejected",…},"target":"doorbell_ingest"}`. No
//! timestamp (CloudWatch adds one). The template's metric filter reads `$.fields.metric`.
//! JSON escapes C0 controls and `"` itself; DEL, C1 controls, U+2028/U+2029 and bidirectional
//! controls are valid raw in a JSON string, so [`JsonEscaping`] writes them as `\uXXXX` too.
//!
//! Text ([`text_subscriber`]): tracing-subscriber's full format, with its field formatter
//! replaced by [`EscapedFields`]. tracing-subscriber 0.3.23 escapes only ESC, BEL, BS, FF, DEL
//! and C1 controls, and only in the message; a `%` field goes out raw, so a source name holding
//! `%0a` wrote a forged line. [`EscapedFields`] escapes the characters [`escape`] lists in
//! every field value and in the message.
//!
//! Filter with `RUST_LOG`. Nothing logged carries a body, a signature header or a secret.

use std::fmt;
use std::io;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter, SubscriberBuilder};

/// A JSON subscriber writing to `writer`, filtered by `RUST_LOG` (default `info`).
pub fn json_subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_span_list(false)
        .without_time()
        .with_writer(JsonEscaping(writer))
        .finish()
}

/// Installs [`json_subscriber`] on stdout as the global subscriber (once, in `main`).
pub fn init_json() {
    // Fails only if a subscriber is already set, which leaves logging working.
    let _ = tracing::subscriber::set_global_default(json_subscriber(std::io::stdout));
}

/// The text subscriber's builder: the full format with [`EscapedFields`], writing to `writer`,
/// with ANSI colours when `ansi`, filtered by `RUST_LOG` (else `default_filter`). Call
/// `.init()` to install it (with the `log` bridge) or `.finish()` for a subscriber.
pub fn text_subscriber<W>(
    writer: W,
    ansi: bool,
    default_filter: &str,
) -> SubscriberBuilder<EscapedFields, Format, EnvFilter, W>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .fmt_fields(EscapedFields::default())
        .with_writer(writer)
        .with_ansi(ansi)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
}

/// True for a character a log line must not carry raw: C0 controls (line feed, carriage
/// return, NUL, ESC, …), DEL, C1 controls (NEL, CSI, …), the line and paragraph separators
/// U+2028/U+2029, and the bidirectional controls U+202A–U+202E and U+2066–U+2069 (which
/// reorder what a viewer shows).
pub fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Writes `text` to `out` with every [`must_escape`] character escaped: `\n`, `\r`, `\t`;
/// other C0 controls and DEL as `\xNN` (`\x00`, `\x1b`); the others as `\u{NNNN}` (`\u{85}`,
/// `\u{2028}`). Everything else, backslashes included, is written as is.
///
/// # Errors
/// Whatever `out` returns.
pub fn escape(text: &str, out: &mut impl fmt::Write) -> fmt::Result {
    let mut rest = text;
    while let Some(i) = rest.find(must_escape) {
        out.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().expect("found at i");
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\0'..='\x1f' | '\x7f' => write!(out, "\\x{:02x}", c as u32)?,
            _ => write!(out, "\\u{{{:x}}}", c as u32)?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// The text formatter's fields, escaped: formats an event's or a span's fields exactly as
/// tracing-subscriber's [`DefaultFields`] does (`message key=value …`), then writes the result
/// through [`escape`]. Field names are not italicised on a terminal.
#[derive(Debug)]
pub struct EscapedFields(DefaultFields);

impl Default for EscapedFields {
    fn default() -> Self {
        Self(DefaultFields::new())
    }
}

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut raw = String::new();
        self.0.format_fields(Writer::new(&mut raw), fields)?;
        escape(&raw, &mut writer)
    }
}

/// A [`MakeWriter`] for JSON lines that rewrites the characters JSON leaves raw but
/// [`must_escape`] lists (DEL, C1 controls, U+2028/U+2029, bidirectional controls) as their
/// `\uXXXX` JSON escapes. They only ever occur inside JSON strings, where the escape decodes to
/// the same character, so every line stays the same JSON value.
#[derive(Debug, Clone)]
pub struct JsonEscaping<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonEscaping<M> {
    type Writer = JsonEscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonEscapingWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        JsonEscapingWriter(self.0.make_writer_for(meta))
    }
}

/// The writer [`JsonEscaping`] makes.
#[derive(Debug)]
pub struct JsonEscapingWriter<W>(W);

impl<W: io::Write> io::Write for JsonEscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Every character to rewrite is DEL or encoded with a byte of 0x80 or more.
        if buf.iter().all(|b| *b < 0x7f) {
            return self.0.write(buf);
        }
        let text = match std::str::from_utf8(buf) {
            Ok(t) => t,
            // The formatter writes each line whole, so this is a line's valid start, or bytes
            // that are not UTF-8 at all (written as they are).
            Err(e) if e.valid_up_to() > 0 => {
                std::str::from_utf8(&buf[..e.valid_up_to()]).expect("valid up to here")
            }
            Err(_) => return self.0.write(buf),
        };
        let mut out = String::with_capacity(text.len() + 16);
        let mut rest = text;
        // C0 controls are already escaped by JSON, except each line's own line feed.
        while let Some(i) = rest.find(|c: char| c >= '\x7f' && must_escape(c)) {
            out.push_str(&rest[..i]);
            let c = rest[i..].chars().next().expect("found at i");
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
            rest = &rest[i + c.len_utf8()..];
        }
        out.push_str(rest);
        self.0.write_all(out.as_bytes())?;
        Ok(text.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        escape(s, &mut out).unwrap();
        out
    }

    #[test]
    fn escapes_every_control_and_separator_and_keeps_the_rest() {
        assert_eq!(escaped("a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escaped("\0\x1b[31m\x07\x7f"), "\\x00\\x1b[31m\\x07\\x7f");
        assert_eq!(
            escaped("\u{85}\u{9b}\u{2028}\u{2029}\u{202e}\u{2066}"),
            "\\u{85}\\u{9b}\\u{2028}\\u{2029}\\u{202e}\\u{2066}"
        );
        assert_eq!(escaped("café ☕ \\n \"q\""), "café ☕ \\n \"q\"");
        assert_eq!(escaped(""), "");
    }

    #[test]
    fn json_lines_keep_their_value_with_nothing_raw() {
        use std::io::Write;
        let line = "{\"s\":\"a\u{7f}b\u{85}c\u{2028}d\u{202e}e\u{1F600}é\"}\n";
        let mut w = JsonEscapingWriter(Vec::new());
        w.write_all(line.as_bytes()).unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(
            out,
            "{\"s\":\"a\\u007fb\\u0085c\\u2028d\\u202ee\u{1F600}é\"}\n"
        );
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        let orig: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(back, orig);
    }
}
