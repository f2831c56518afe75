//! A [`PageKey`] as the bytes of Temporal's `next_page_token`: what the server hands out with
//! one page and takes back to read the next. The bytes come back from clients, so decoding
//! checks everything and refuses what this server did not write.
//!
//! Layout: a version byte (1), the number of values (one byte), each value as a tag byte
//! (0 integer, 1 float, 2 text) followed by 8 big-endian bytes or a 4-byte length and UTF-8
//! text, then the run id as length and text.

use crate::{PageKey, SqlValue};

const VERSION: u8 = 1;
/// More order attributes than any query can name (the parser bounds ORDER BY far lower).
const MAX_VALUES: usize = 64;

impl PageKey {
    /// The token for this key.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, self.values.len().min(MAX_VALUES) as u8];
        for value in self.values.iter().take(MAX_VALUES) {
            match value {
                SqlValue::Int(i) => {
                    out.push(0);
                    out.extend_from_slice(&i.to_be_bytes());
                }
                SqlValue::Float(f) => {
                    out.push(1);
                    out.extend_from_slice(&f.to_bits().to_be_bytes());
                }
                SqlValue::Text(s) => {
                    out.push(2);
                    put_text(&mut out, s);
                }
            }
        }
        put_text(&mut out, &self.run_id);
        out
    }

    /// The key a token names, or `None` when the bytes are not a token of this server's (or
    /// hold another number of values than `expected_values`, the query's sort key length).
    pub fn decode(token: &[u8], expected_values: usize) -> Option<PageKey> {
        let mut reader = Reader(token);
        if reader.byte()? != VERSION {
            return None;
        }
        let count = usize::from(reader.byte()?);
        if count != expected_values {
            return None;
        }
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            values.push(match reader.byte()? {
                0 => SqlValue::Int(i64::from_be_bytes(reader.array()?)),
                1 => SqlValue::Float(f64::from_bits(u64::from_be_bytes(reader.array()?))),
                2 => SqlValue::Text(reader.text()?),
                _ => return None,
            });
        }
        let run_id = reader.text()?;
        reader.0.is_empty().then_some(PageKey { values, run_id })
    }
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn text(&mut self) -> Option<String> {
        let len = usize::try_from(u32::from_be_bytes(self.array()?)).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_round_trip_and_forgeries_are_refused() {
        let key = PageKey {
            values: vec![
                SqlValue::Int(-3),
                SqlValue::Float(2.5),
                SqlValue::Text("é".into()),
            ],
            run_id: "run".into(),
        };
        let token = key.encode();
        assert_eq!(PageKey::decode(&token, 3), Some(key));
        assert_eq!(PageKey::decode(&token, 2), None);
        assert_eq!(PageKey::decode(&token[..token.len() - 1], 3), None);
        let mut longer = token.clone();
        longer.push(0);
        assert_eq!(PageKey::decode(&longer, 3), None);
        assert_eq!(PageKey::decode(&[], 0), None);
        assert_eq!(PageKey::decode(&[1, 0, 0xff, 0xff, 0xff, 0xff], 0), None);
        assert_eq!(PageKey::decode(&0u64.to_be_bytes(), 3), None);
    }
}
