//! Numbers in domain XML attributes, read the way the contract (rules.md) states libvirt
//! reads them: `0x`-prefixed hexadecimal, or plain decimal digits. Nothing else, not even
//! a sign or surrounding blanks, so that a value can never smuggle anything else through.

/// Parses `0x1f`, `0X1F` or `31`; `None` for anything else or anything above `max`.
pub fn parse_uint(text: &str, max: u64) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // from_str_radix fails only on overflow here: the digits were checked above.
    u64::from_str_radix(digits, radix).ok().filter(|&v| v <= max)
}

/// Parses a libvirt node set such as `0-3,^2,8` into its sorted members.
pub fn parse_nodeset(text: &str, max: u32) -> Option<Vec<u32>> {
    let mut included = Vec::new();
    let mut excluded = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (negated, part) = match part.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, part),
        };
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo = parse_uint(lo, u64::from(max))? as u32;
        let hi = parse_uint(hi, u64::from(max))? as u32;
        if lo > hi || (negated && lo != hi) {
            return None;
        }
        let target = if negated { &mut excluded } else { &mut included };
        target.extend(lo..=hi);
    }
    included.sort_unstable();
    included.dedup();
    included.retain(|n| !excluded.contains(n));
    Some(included)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_decimal() {
        assert_eq!(parse_uint("0x1f", 255), Some(31));
        assert_eq!(parse_uint("0X1F", 255), Some(31));
        assert_eq!(parse_uint("31", 255), Some(31));
        assert_eq!(parse_uint("007", 255), Some(7));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "0x", "zz", "-1", "+1", " 1", "1 ", "../../etc", "0x1g", "1e3"] {
            assert_eq!(parse_uint(bad, u64::MAX), None, "{bad:?}");
        }
        assert_eq!(parse_uint("0x100", 0xff), None);
        assert_eq!(parse_uint("99999999999999999999999", u64::MAX), None);
    }

    #[test]
    fn nodesets() {
        assert_eq!(parse_nodeset("1", 1024), Some(vec![1]));
        assert_eq!(parse_nodeset("0-3,^2,8", 1024), Some(vec![0, 1, 3, 8]));
        assert_eq!(parse_nodeset("0-2000", 1024), None);
        assert_eq!(parse_nodeset("3-1", 1024), None);
        assert_eq!(parse_nodeset("a", 1024), None);
    }
}
