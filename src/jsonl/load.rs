//! Reading a JSON Lines file written by this crate or by pico-server-auth.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::StoreError;

/// Block size of the backwards reader of [`load_last`].
const TAIL_BLOCK: u64 = 64 * 1024;

/// Reads every record of `path`, oldest first.
///
/// A missing file is empty. Blank lines are skipped; a line that is not JSON
/// or not a `T` is skipped with a warning naming its line number; a torn last
/// line is skipped the same way.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<Vec<T>, StoreError> {
    let path = path.as_ref();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut line_no = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        let terminated = line.last() == Some(&b'\n');
        if let Some(record) = parse_line(&line, path, LinePos::Number(line_no), !terminated) {
            out.push(record);
        }
    }
    Ok(out)
}

/// Reads the newest `n` records of `path`, oldest first, reading the file
/// backwards from its end in blocks: start-up cost is bounded by what is
/// kept, not by the size of the file.
///
/// Skips what [`load`] skips; warnings count lines from the end of the file.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn load_last<T: DeserializeOwned>(
    path: impl AsRef<Path>,
    n: usize,
) -> Result<Vec<T>, StoreError> {
    let path = path.as_ref();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut pos = file.metadata()?.len();
    // Newest first while collecting.
    let mut newest_first: VecDeque<T> = VecDeque::new();
    // Bytes from the start of the current block to the first newline seen
    // so far: the tail end of a line whose start lies further back.
    let mut carry: Vec<u8> = Vec::new();
    let mut from_end = 0usize;
    let mut first_segment = true;
    while pos > 0 && newest_first.len() < n {
        let start = pos.saturating_sub(TAIL_BLOCK);
        let len = usize::try_from(pos - start).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        let mut end = buf.len();
        while let Some(i) = buf[..end].iter().rposition(|b| *b == b'\n') {
            if !(first_segment && i + 1 == end) {
                // Not the empty "line" after the file's final newline.
                from_end += 1;
                let segment = &buf[i + 1..end];
                if let Some(r) =
                    parse_line(segment, path, LinePos::FromEnd(from_end), first_segment)
                {
                    newest_first.push_back(r);
                    if newest_first.len() == n {
                        break;
                    }
                }
            }
            first_segment = false;
            end = i;
        }
        carry = buf[..end].to_vec();
        pos = start;
    }
    if pos == 0 && newest_first.len() < n && !carry.is_empty() {
        from_end += 1;
        if let Some(r) = parse_line(&carry, path, LinePos::FromEnd(from_end), first_segment) {
            newest_first.push_back(r);
        }
    }
    Ok(newest_first.into_iter().rev().collect())
}

#[derive(Clone, Copy)]
enum LinePos {
    Number(usize),
    FromEnd(usize),
}

impl std::fmt::Display for LinePos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinePos::Number(n) => write!(f, "line {n}"),
            LinePos::FromEnd(n) => write!(f, "line {n} from the end"),
        }
    }
}

/// Parses one line (with or without its `\n`); `None` for a blank or bad one.
fn parse_line<T: DeserializeOwned>(
    line: &[u8],
    path: &Path,
    pos: LinePos,
    unterminated: bool,
) -> Option<T> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match serde_json::from_slice(line) {
        Ok(r) => Some(r),
        Err(e) => {
            // The serde error names a column and a category, never the
            // line's contents.
            let what = if unterminated {
                "torn last line (no newline) skipped"
            } else {
                "malformed line skipped"
            };
            tracing::warn!(
                path = %path.display(),
                error = category(&e),
                column = e.column(),
                "{what}: {pos}"
            );
            None
        }
    }
}

/// A short, content-free name for a serde_json error category.
fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "io",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "unexpected fields or types",
        serde_json::error::Category::Eof => "truncated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonl::test_support::{recs, Rec};

    #[test]
    fn load_skips_blank_malformed_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(
            &path,
            b"{\"id\":1}\n\n   \n{oops\n{\"x\":1}\n\xff\xfe\n{\"id\":2}\r\n{\"id\":3}\n{\"id\":",
        )
        .unwrap();
        assert_eq!(load::<Rec>(&path).unwrap(), recs(&[1, 2, 3]));
        assert_eq!(load_last::<Rec>(&path, 2).unwrap(), recs(&[2, 3]));
        assert_eq!(load_last::<Rec>(&path, 100).unwrap(), recs(&[1, 2, 3]));
        assert!(load_last::<Rec>(&path, 0).unwrap().is_empty());
    }

    #[test]
    fn missing_file_loads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.jsonl");
        assert!(load::<Rec>(&path).unwrap().is_empty());
        assert!(load_last::<Rec>(&path, 5).unwrap().is_empty());
    }

    #[test]
    fn an_unterminated_complete_last_line_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{\"id\":1}\n{\"id\":2}").unwrap();
        assert_eq!(load::<Rec>(&path).unwrap(), recs(&[1, 2]));
        assert_eq!(load_last::<Rec>(&path, 1).unwrap(), recs(&[2]));
    }

    #[test]
    fn load_last_crosses_block_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.jsonl");
        let mut text = Vec::new();
        let pad = "p".repeat(1000);
        for id in 0..500u32 {
            text.extend_from_slice(format!("{{\"id\":{id},\"pad\":\"{pad}\"}}\n").as_bytes());
            if id == 250 {
                text.extend_from_slice(b"not json at all\n");
            }
        }
        std::fs::write(&path, &text).unwrap();
        assert!(text.len() as u64 > 4 * TAIL_BLOCK);
        let all: Vec<Rec> = load(&path).unwrap();
        assert_eq!(all.len(), 500);
        let last: Vec<Rec> = load_last(&path, 300).unwrap();
        assert_eq!(last, recs(&(200..500).collect::<Vec<_>>()));
        let every: Vec<Rec> = load_last(&path, 10_000).unwrap();
        assert_eq!(every, all);
    }
}
