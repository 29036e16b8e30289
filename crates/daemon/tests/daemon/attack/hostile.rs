//! Hostile inputs: JSON and DER/BER nested tens of thousands of levels deep, and surgery on
//! DER structures (replacing one element of a signed message and fixing every enclosing
//! length) so that one layer of an otherwise well-formed message carries the attack.

/// JSON arrays nested `depth` deep around `innermost` (`[[[…1…]]]`).
pub fn deep_json_array(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// JSON objects nested `depth` deep under key `key` (`{"k":{"k":…{}…}}`).
pub fn deep_json_object(key: &str, depth: usize) -> String {
    format!("{}{{}}{}", format!("{{\"{key}\":").repeat(depth), "}".repeat(depth))
}

/// A DER length.
fn length(len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![len as u8],
        0x80..=0xff => vec![0x81, len as u8],
        0x100..=0xffff => vec![0x82, (len >> 8) as u8, len as u8],
        _ => vec![0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8],
    }
}

/// One TLV with a definite length.
pub fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(length(contents.len()));
    out.extend_from_slice(contents);
    out
}

/// `depth` constructed TLVs of `tag` with definite lengths around `innermost`, built inside
/// out in one pass.
pub fn nest_definite(tag: u8, depth: usize, innermost: &[u8]) -> Vec<u8> {
    let mut headers = Vec::with_capacity(depth);
    let mut len = innermost.len();
    for _ in 0..depth {
        let mut header = vec![tag];
        header.extend(length(len));
        len += header.len();
        headers.push(header);
    }
    let mut out: Vec<u8> = headers.into_iter().rev().flatten().collect();
    out.extend_from_slice(innermost);
    out
}

/// `depth` constructed TLVs of `tag` with indefinite lengths (BER) around `innermost`,
/// each closed by an end-of-contents.
pub fn nest_indefinite(tag: u8, depth: usize, innermost: &[u8]) -> Vec<u8> {
    let mut out = [tag, 0x80].repeat(depth);
    out.extend_from_slice(innermost);
    out.extend([0u8, 0].repeat(depth));
    out
}

/// `depth` indefinite-length openings of `tag` and nothing after them: a parser that
/// recurses per level goes `depth` deep before it finds the input ends.
pub fn nest_unterminated(tag: u8, depth: usize) -> Vec<u8> {
    [tag, 0x80].repeat(depth)
}

/// Reads one definite-length TLV: (tag, contents, rest).
fn read_tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (digits, rest) = rest.split_at_checked(count)?;
        (digits.iter().fold(0usize, |acc, &d| (acc << 8) | usize::from(d)), rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// The children of a constructed TLV's contents.
fn children(mut contents: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !contents.is_empty() {
        let (tag, inner, rest) = read_tlv(contents)?;
        out.push((tag, inner));
        contents = rest;
    }
    Some(out)
}

/// `der` with the element at `path` (child indexes from the outermost TLV) replaced by the
/// TLV `replace(tag, contents)` returns; every enclosing length is recomputed.
pub fn replace_at(der: &[u8], path: &[usize], replace: &dyn Fn(u8, &[u8]) -> Vec<u8>) -> Option<Vec<u8>> {
    let (tag, contents, _) = read_tlv(der)?;
    let Some((&index, deeper)) = path.split_first() else {
        return Some(replace(tag, contents));
    };
    let kids = children(contents)?;
    let mut body = Vec::with_capacity(contents.len());
    for (i, (kid_tag, kid_contents)) in kids.iter().enumerate() {
        let kid = tlv(*kid_tag, kid_contents);
        if i == index {
            body.extend(replace_at(&kid, deeper, replace)?);
        } else {
            body.extend(kid);
        }
    }
    (index < kids.len()).then(|| tlv(tag, &body))
}

/// `der` with the first primitive TLV whose contents are `marker` replaced by `raw` (any
/// bytes, inserted as they are); every enclosing length is recomputed. None when the marker
/// is not found.
pub fn replace_marker(der: &[u8], marker: &[u8], raw: &[u8]) -> Option<Vec<u8>> {
    let (tag, contents, _) = read_tlv(der)?;
    if contents == marker {
        return Some(raw.to_vec());
    }
    if tag & 0x20 == 0 {
        return None;
    }
    let kids = children(contents)?;
    let mut body = Vec::with_capacity(contents.len() + raw.len());
    let mut found = false;
    for (kid_tag, kid_contents) in &kids {
        let kid = tlv(*kid_tag, kid_contents);
        match (!found).then(|| replace_marker(&kid, marker, raw)).flatten() {
            Some(replaced) => {
                body.extend(replaced);
                found = true;
            }
            None => body.extend(kid),
        }
    }
    found.then(|| tlv(tag, &body))
}

/// The contents of the element at `path`.
pub fn element_at(der: &[u8], path: &[usize]) -> Option<(u8, Vec<u8>)> {
    let (tag, contents, _) = read_tlv(der)?;
    match path.split_first() {
        None => Some((tag, contents.to_vec())),
        Some((&index, deeper)) => {
            let (kid_tag, kid_contents) = *children(contents)?.get(index)?;
            element_at(&tlv(kid_tag, kid_contents), deeper)
        }
    }
}

/// The first half of `der`: cut in the middle of the structure.
pub fn truncated(der: &[u8]) -> Vec<u8> {
    der[..der.len() / 2].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surgery_keeps_the_structure_consistent() {
        let inner = tlv(0x30, &[tlv(0x04, b"abc"), tlv(0x02, &[5])].concat());
        let outer = tlv(0x30, &[tlv(0x06, &[1, 2]), inner].concat());
        let replaced = replace_at(&outer, &[1, 0], &|_, _| tlv(0x04, &[9; 300])).unwrap();
        assert_eq!(element_at(&replaced, &[1, 0]).unwrap(), (0x04, vec![9; 300]));
        assert_eq!(element_at(&replaced, &[1, 1]).unwrap(), (0x02, vec![5]));
        let marked = replace_marker(&outer, b"abc", &tlv(0x05, &[])).unwrap();
        assert_eq!(element_at(&marked, &[1, 0]).unwrap(), (0x05, vec![]));
        assert!(replace_marker(&outer, b"zzz", &[]).is_none());
        let deep = nest_definite(0x30, 40_000, &[]);
        assert_eq!(read_tlv(&deep).map(|(t, _, rest)| (t, rest.len())), Some((0x30, 0)));
    }
}
