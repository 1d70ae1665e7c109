//! Reading input one line at a time with bounded memory.
//!
//! `BufRead::read_until` keeps a whole line however long it is: one line of
//! 1.1 GB without a newline held 2.1 GB and made `streamctl run` fail
//! (issue 25). Here a line longer than the limit is not kept: its first
//! [`engine::DEAD_LETTER_PREFIX_BYTES`] are, with its length and SHA-256,
//! and the rest is read through and hashed.

use sha2::{Digest, Sha256};
use std::io::{BufRead, ErrorKind};

/// What [`read_line`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The whole line is in the buffer (without its `\n`).
    Whole,
    /// The line was longer than the limit: the buffer holds its beginning.
    Truncated {
        /// The line's length in bytes, without its `\n`.
        len: u64,
        /// The SHA-256 of the whole line, without its `\n`.
        sha256: [u8; 32],
    },
}

/// Reads the next line into `line` (cleared first), keeping at most
/// `limit` bytes of it; `None` at the end of the input.
///
/// # Errors
/// When reading fails.
pub fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>, limit: usize) -> std::io::Result<Option<Line>> {
    line.clear();
    let mut len = 0u64;
    let mut hasher: Option<Sha256> = None;
    let mut has_read = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            break;
        }
        has_read = true;
        let newline = memchr::memchr(b'\n', buffer);
        let chunk = &buffer[..newline.unwrap_or(buffer.len())];
        len += chunk.len() as u64;
        match &mut hasher {
            Some(hasher) => hasher.update(chunk),
            None if line.len() + chunk.len() <= limit => line.extend_from_slice(chunk),
            None => {
                let mut started = Sha256::new();
                started.update(&*line);
                started.update(chunk);
                hasher = Some(started);
                let keep = engine::DEAD_LETTER_PREFIX_BYTES;
                let room = keep.saturating_sub(line.len()).min(chunk.len());
                line.extend_from_slice(&chunk[..room]);
                line.truncate(keep);
            }
        }
        let used = chunk.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if !has_read {
        return Ok(None);
    }
    Ok(Some(match hasher {
        None => Line::Whole,
        Some(hasher) => Line::Truncated { len, sha256: hasher.finalize().into() },
    }))
}

/// The lines of a reader, each borrowed from the reader's buffer when it is
/// whole in it (no copy: the common line), else read with [`read_line`].
pub struct Lines<R> {
    reader: R,
    line: Vec<u8>,
    limit: usize,
    /// Bytes of the reader's buffer given out as the last line.
    given: usize,
}

impl<R: BufRead> Lines<R> {
    /// The lines of `reader`, keeping at most `limit` bytes of each, as [`read_line`].
    pub fn new(reader: R, limit: usize) -> Self {
        Lines { reader, line: Vec::with_capacity(1024), limit, given: 0 }
    }

    /// The next line (without its `\n`) and what was read of it, as
    /// [`read_line`] says; `None` at the end of the input.
    ///
    /// # Errors
    /// When reading fails.
    pub fn next_line(&mut self) -> std::io::Result<Option<(&[u8], Line)>> {
        self.reader.consume(std::mem::take(&mut self.given));
        let newline = loop {
            match self.reader.fill_buf() {
                Ok(buffer) => break memchr::memchr(b'\n', buffer).filter(|&n| n <= self.limit),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        };
        if let Some(n) = newline {
            self.given = n + 1;
            // Filled above: this returns the same bytes without reading.
            let buffer = self.reader.fill_buf()?;
            return Ok(Some((&buffer[..n], Line::Whole)));
        }
        Ok(read_line(&mut self.reader, &mut self.line, self.limit)?.map(|read| (self.line.as_slice(), read)))
    }
}

/// Whether a line holds nothing but whitespace (a blank line, or a `\r`
/// left by a CRLF file).
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn lines(input: &[u8], limit: usize, buffer: usize) -> Vec<(Vec<u8>, Line)> {
        let mut reader = BufReader::with_capacity(buffer, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        while let Some(read) = read_line(&mut reader, &mut line, limit).expect("in memory") {
            out.push((line.clone(), read));
        }
        out
    }

    #[test]
    fn lines_up_to_the_limit_are_whole_and_longer_ones_are_cut_with_their_size_and_digest() {
        let long = vec![b'x'; 10_000];
        let mut input = b"short\n\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        for buffer in [1, 7, 64, 1 << 16] {
            let read = lines(&input, 9_999, buffer);
            assert_eq!(read.len(), 4, "buffer {buffer}");
            assert_eq!(read[0], (b"short".to_vec(), Line::Whole));
            assert_eq!(read[1], (Vec::new(), Line::Whole));
            let sha256: [u8; 32] = Sha256::digest(&long).into();
            assert_eq!(read[2].1, Line::Truncated { len: 10_000, sha256 });
            assert_eq!(read[2].0, long[..engine::DEAD_LETTER_PREFIX_BYTES].to_vec());
            assert_eq!(read[3], (b"last".to_vec(), Line::Whole));
            assert_eq!(lines(&input, 10_000, buffer)[2], (long.clone(), Line::Whole), "exactly the limit is whole");
        }
    }

    #[test]
    fn lines_borrowed_from_the_buffer_are_those_read_line_reads() {
        let long = vec![b'x'; 10_000];
        let input = [&b"short\n\n{\"a\":1}\r\n"[..], &long, b"\nnext\n", &long[..9_999], b"\nlast"].concat();
        for buffer in [1, 7, 64, 9_000, 1 << 16] {
            for limit in [5, 9_999, 10_000] {
                let expected = lines(&input, limit, buffer);
                let mut read = Lines::new(BufReader::with_capacity(buffer, &input[..]), limit);
                let mut got = Vec::new();
                while let Some((line, how)) = read.next_line().expect("in memory") {
                    got.push((line.to_vec(), how));
                }
                assert_eq!(got, expected, "buffer {buffer}, limit {limit}");
            }
        }
    }

    #[test]
    fn blank_lines_are_whitespace_only() {
        assert!(is_blank(b"") && is_blank(b"\r") && is_blank(b" \t "));
        assert!(!is_blank(b" {} "));
    }
}
