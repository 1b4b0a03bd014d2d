//! A bounded Server-Sent Events parser (the WHATWG event-stream format):
//! bytes in, events out, no line and no event longer than the limit.

/// One dispatched event, or a comment line (a keep-alive).
///
/// ```
/// use wallet_auth_consumer::sse::{SseItem, SseParser};
/// let mut out = Vec::new();
/// SseParser::new(64).push(b": keep-alive\n", &mut out).unwrap();
/// assert_eq!(out, vec![SseItem::Comment]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// An event: its `event` type (`message` when absent), its `data`
    /// lines joined by `\n`, and its `id` when the event carried one.
    Event {
        /// The event type.
        event: String,
        /// The data.
        data: String,
        /// The `id` field of this event.
        id: Option<String>,
    },
    /// A comment line (`:` ...): the server's keep-alive.
    Comment,
}

/// Why a stream was abandoned.
///
/// ```
/// use wallet_auth_consumer::sse::{SseError, SseParser};
/// let mut out = Vec::new();
/// let e = SseParser::new(4).push(b"data: 12345\n", &mut out).unwrap_err();
/// assert_eq!(e, SseError::TooLong(4));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line, or an event's data, grew past the limit.
    #[error("event stream line or event over {0} bytes")]
    TooLong(usize),
}

/// An incremental event-stream parser. Feed it the body's chunks as they
/// arrive with [`SseParser::push`]; lines may be split anywhere, and end in
/// `\n`, `\r\n` or `\r`.
///
/// ```
/// use wallet_auth_consumer::sse::{SseItem, SseParser};
/// let mut p = SseParser::new(1024);
/// let mut out = Vec::new();
/// p.push(b"event: revoked\nid: 7\ndata: {\"jti\":\"a\"}\n\n: ping\n", &mut out).unwrap();
/// assert_eq!(out[0], SseItem::Event {
///     event: "revoked".into(), data: "{\"jti\":\"a\"}".into(), id: Some("7".into()),
/// });
/// assert_eq!(out[1], SseItem::Comment);
/// ```
#[derive(Debug)]
pub struct SseParser {
    max: usize,
    line: Vec<u8>,
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl SseParser {
    /// A parser refusing lines and events over `max` bytes.
    ///
    /// ```
    /// let p = wallet_auth_consumer::sse::SseParser::new(64 * 1024);
    /// # let _ = p;
    /// ```
    pub fn new(max: usize) -> Self {
        Self {
            max,
            line: Vec::new(),
            after_cr: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            id: None,
        }
    }

    /// Parses `bytes`, appending every completed item to `out`.
    ///
    /// # Errors
    /// [`SseError::TooLong`] when a line or an event's data passes the
    /// limit; the stream should then be dropped.
    ///
    /// ```
    /// use wallet_auth_consumer::sse::SseParser;
    /// let mut p = SseParser::new(8);
    /// let mut out = Vec::new();
    /// assert!(p.push(b"data: far too long\n", &mut out).is_err());
    /// ```
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseItem>) -> Result<(), SseError> {
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, out)?;
                }
                _ => {
                    if self.line.len() >= self.max {
                        return Err(SseError::TooLong(self.max));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseItem>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                let event = if self.event.is_empty() {
                    "message".to_string()
                } else {
                    std::mem::take(&mut self.event)
                };
                out.push(SseItem::Event {
                    event,
                    data: std::mem::take(&mut self.data),
                    id: self.id.take(),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            self.id = None;
            return Ok(());
        }
        if line[0] == b':' {
            out.push(SseItem::Comment);
            return Ok(());
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                if self.data.len() + value.len() > self.max {
                    return Err(SseError::TooLong(self.max));
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out).unwrap();
        }
        out
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseItem {
        SseItem::Event {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn frames_and_line_endings() {
        let all = b"event: reset\r\nid: 3\r\ndata: {}\r\n\r\ndata:a\rdata: b\r\r:k\n\n";
        let want = vec![
            ev("reset", "{}", Some("3")),
            ev("message", "a\nb", None),
            SseItem::Comment,
        ];
        assert_eq!(parse(&[all]), want);
        // Split at every byte, including between \r and \n.
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(parse(&bytes), want);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(parse(&[b"event: revoked\nid: 1\n\n"]), vec![]);
        assert_eq!(parse(&[b"data\n\n"]), vec![ev("message", "", None)]);
    }

    #[test]
    fn limits_hold() {
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        assert_eq!(p.push(&[b'x'; 17], &mut out), Err(SseError::TooLong(16)));
        let mut p = SseParser::new(16);
        let many = b"data: 0123456789\ndata: 0123456789\n";
        assert!(p.push(many, &mut out).is_err(), "data over the limit");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            split in 1usize..64,
        ) {
            let mut p = SseParser::new(128);
            let mut out = Vec::new();
            for chunk in bytes.chunks(split) {
                if p.push(chunk, &mut out).is_err() {
                    break;
                }
            }
            for item in &out {
                if let SseItem::Event { data, event, .. } = item {
                    prop_assert!(data.len() <= 128 * 3 + 1);
                    prop_assert!(event.len() <= 128 * 3);
                }
            }
        }

        #[test]
        fn chunking_does_not_change_the_result(
            events in proptest::collection::vec(("[a-z]{1,8}", "[ -~]{0,30}", 0u64..1000), 0..10),
            split in 1usize..16,
        ) {
            let mut text = String::new();
            for (e, d, id) in &events {
                text.push_str(&format!(": keep\nevent: {e}\nid: {id}\ndata: {d}\n\n"));
            }
            let whole = parse(&[text.as_bytes()]);
            let chunks: Vec<&[u8]> = text.as_bytes().chunks(split).collect();
            prop_assert_eq!(&parse(&chunks), &whole);
            let dispatched = whole.iter().filter(|i| matches!(i, SseItem::Event { .. })).count();
            prop_assert_eq!(dispatched, events.len());
        }
    }
}
