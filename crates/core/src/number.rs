//! Numbers in domain XML, read the way libvirt reads each one, so that phbguard judges the
//! guest libvirt will define and never one of its own making (docs/rules.md, "How numbers are
//! read").
//!
//! libvirt reads every such number with `strtoul`/`strtol` through `virStrToLong_uip` and
//! friends (src/util/virstring.c), whole string, in a base chosen per attribute
//! (`virXMLPropUInt(node, name, base, ...)`): base 0 for PCI addresses and a PHB's
//! `<target index>`, base 10 for a controller's `index`, `<node>` and `<memnode cellid>`.
//! What C accepts besides digits is accepted here too (leading blanks, a `+`), and what
//! libvirt refuses is refused: a `-`, trailing text, `08` in base 0, `0x0a` in base 10.

/// The base an attribute is read in: the third argument of libvirt's `virXMLPropUInt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// `strtoul(s, &end, 0)`: `0x`/`0X` is hexadecimal, a leading `0` octal, else decimal.
    Auto,
    /// `strtoul(s, &end, 10)`: decimal digits only (`010` is ten, `0x0a` is refused).
    Decimal,
}

/// libvirt stores these numbers in a C `unsigned int` and refuses what does not fit.
const UINT_MAX: u64 = u32::MAX as u64;

/// Reads `text` as libvirt would in `base`; `None` for anything libvirt refuses or anything
/// above `max`.
pub fn parse_uint(text: &str, base: Base, max: u64) -> Option<u64> {
    // strtoul skips C's isspace() blanks, then takes one optional sign; libvirt refuses any
    // '-' (virStrToLong_uip's memchr).
    let rest = text.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let rest = rest.strip_prefix('+').unwrap_or(rest);
    let (digits, radix) = match base {
        Base::Decimal => (rest, 10),
        Base::Auto => match rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            // strtoul reads "0x" without a hex digit after it as "0" followed by text, which
            // libvirt then refuses: the digits check below does the same.
            Some(hex) => (hex, 16),
            None if rest.len() > 1 && rest.starts_with('0') => (&rest[1..], 8),
            None => (rest, 10),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| char::from(b).is_digit(radix)) {
        return None;
    }
    // from_str_radix fails only on overflow here: the digits were checked above.
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|&v| v <= UINT_MAX && v <= max)
}

/// How libvirt bounds a memory size it reads, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeBound {
    /// `<memory>`, `<maxMemory>` (`virDomainParseMemory`, capped): at most `LLONG_MAX` bytes,
    /// and the size in KiB must stay below `LLONG_MAX / 1024` (rounded up).
    Memory,
    /// `<memtune><hard_limit>` (`virDomainParseMemoryLimit`): at most
    /// `VIR_DOMAIN_MEMORY_PARAM_UNLIMITED` KiB; that value itself means "unlimited".
    Limit,
}

/// `VIR_DOMAIN_MEMORY_PARAM_UNLIMITED` (include/libvirt/libvirt-domain.h): `INT64_MAX >> 10`
/// KiB, libvirt's "no limit".
pub const UNLIMITED_KIB: u64 = (i64::MAX as u64) >> 10;

/// Why a memory size is refused, as libvirt says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeError {
    /// Not a decimal number (`virStrToLong_ullp`).
    NotANumber,
    /// A `unit` libvirt does not know (`virScaleInteger`).
    UnknownUnit,
    /// Larger than the bound.
    TooLarge,
}

/// Reads a memory size as libvirt does (`virParseScaledValue`, src/util/virxml.c, then
/// `virScaleInteger`, src/util/virutil.c): a decimal number (leading blanks, nothing after it),
/// times its `unit` (none: KiB; `b`/`bytes`; `k`/`KiB`, `M`/`MiB`... powers of 1024; `KB`,
/// `MB`... powers of 1000; case-insensitive), as KiB rounded up. `Ok(None)` for a limit of
/// `UNLIMITED_KIB` or more: libvirt's "unlimited".
pub fn parse_size_kib(text: &str, unit: Option<&str>, bound: SizeBound) -> Result<Option<u64>, SizeError> {
    let rest = text.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let rest = rest.strip_prefix('+').unwrap_or(rest);
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SizeError::NotANumber);
    }
    let value: u64 = rest.parse().map_err(|_| SizeError::TooLarge)?;
    let scale = match unit.filter(|u| !u.is_empty()) {
        None => 1024,
        Some(u) => unit_scale(u).ok_or(SizeError::UnknownUnit)?,
    };
    let max = match bound {
        SizeBound::Memory => i64::MAX as u64,
        SizeBound::Limit => UNLIMITED_KIB << 10,
    };
    if value != 0 && value > max / scale {
        return Err(SizeError::TooLarge);
    }
    let kib = (value * scale).div_ceil(1024);
    match bound {
        SizeBound::Memory if kib >= max.div_ceil(1024) => Err(SizeError::TooLarge),
        SizeBound::Memory => Ok(Some(kib)),
        SizeBound::Limit if kib >= UNLIMITED_KIB => Ok(None),
        SizeBound::Limit => Ok(Some(kib)),
    }
}

/// The bytes one `unit` stands for, as `virScaleInteger` reads it.
fn unit_scale(unit: &str) -> Option<u64> {
    let lower = unit.to_ascii_lowercase();
    if matches!(lower.as_str(), "b" | "byte" | "bytes") {
        return Some(1);
    }
    let mut chars = lower.chars();
    let prefix = chars.next()?;
    let base: u64 = match chars.as_str() {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return None,
    };
    let power = "kmgtpe".find(prefix)? as u32 + 1;
    Some(base.pow(power))
}

/// Parses a libvirt node set such as `0-3,^2,8` into its sorted members. Node numbers are
/// decimal (`virBitmapParse` reads them with `virStrToLong_i(.., 10, ..)`).
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
        let lo = parse_uint(lo, Base::Decimal, u64::from(max))? as u32;
        let hi = parse_uint(hi, Base::Decimal, u64::from(max))? as u32;
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
    fn base_zero_reads_hex_octal_and_decimal_as_strtoul_does() {
        let auto = |s| parse_uint(s, Base::Auto, u64::MAX);
        assert_eq!(auto("0x1f"), Some(31));
        assert_eq!(auto("0X1F"), Some(31));
        assert_eq!(auto("31"), Some(31));
        // Measured on libvirt 9.0: bus='010' is bus 8, <target index='011'/> is 9.
        assert_eq!(auto("010"), Some(8));
        assert_eq!(auto("011"), Some(9));
        assert_eq!(auto("0"), Some(0));
        assert_eq!(auto("00"), Some(0));
        // strtoul's leading blanks and plus sign.
        assert_eq!(auto(" \t1"), Some(1));
        assert_eq!(auto("+0x2"), Some(2));
    }

    #[test]
    fn base_ten_reads_decimal_only() {
        let dec = |s| parse_uint(s, Base::Decimal, u64::MAX);
        // Measured on libvirt 9.0: controller index='010' is 10, index='0x0a' is refused.
        assert_eq!(dec("010"), Some(10));
        assert_eq!(dec("0x0a"), None);
        assert_eq!(dec("7"), Some(7));
    }

    #[test]
    fn refuses_what_libvirt_refuses() {
        for base in [Base::Auto, Base::Decimal] {
            for bad in [
                "",
                " ",
                "0x",
                "zz",
                "-1",
                "-0",
                "+",
                "1 ",
                "../../etc",
                "0x1g",
                "1e3",
                "0x-1",
                "++1",
                "1\n",
            ] {
                assert_eq!(parse_uint(bad, base, u64::MAX), None, "{bad:?} in {base:?}");
            }
        }
        // A leading 0 is octal: strtoul stops at the 8 and libvirt refuses the rest.
        assert_eq!(parse_uint("08", Base::Auto, u64::MAX), None);
        assert_eq!(parse_uint("0x100", Base::Auto, 0xff), None);
        // More than an unsigned int holds.
        assert_eq!(parse_uint("4294967296", Base::Decimal, u64::MAX), None);
        assert_eq!(parse_uint("0xffffffff", Base::Auto, u64::MAX), Some(0xffff_ffff));
        assert_eq!(parse_uint("99999999999999999999999", Base::Auto, u64::MAX), None);
    }

    #[test]
    fn nodesets() {
        assert_eq!(parse_nodeset("1", 1024), Some(vec![1]));
        assert_eq!(parse_nodeset("0-3,^2,8", 1024), Some(vec![0, 1, 3, 8]));
        assert_eq!(parse_nodeset("010", 1024), Some(vec![10]));
        assert_eq!(parse_nodeset("0x1", 1024), None);
        assert_eq!(parse_nodeset("0-2000", 1024), None);
        assert_eq!(parse_nodeset("3-1", 1024), None);
        assert_eq!(parse_nodeset("a", 1024), None);
    }

    #[test]
    fn sizes_are_read_and_scaled_as_libvirt_does() {
        let mem = |s, u| parse_size_kib(s, u, SizeBound::Memory);
        assert_eq!(mem("1048576", None), Ok(Some(1_048_576)));
        assert_eq!(mem("1048576", Some("KiB")), Ok(Some(1_048_576)));
        assert_eq!(mem("4", Some("GiB")), Ok(Some(4 << 20)));
        assert_eq!(mem("4", Some("g")), Ok(Some(4 << 20)));
        assert_eq!(mem("4", Some("G")), Ok(Some(4 << 20)));
        assert_eq!(mem("1", Some("GB")), Ok(Some(976_563)));
        assert_eq!(mem("1500", Some("bytes")), Ok(Some(2)));
        assert_eq!(mem("1", Some("b")), Ok(Some(1)));
        assert_eq!(mem(" 7", Some("MiB")), Ok(Some(7 << 10)));
        assert_eq!(mem("1", Some("XiB")), Err(SizeError::UnknownUnit));
        assert_eq!(mem("1", Some("KiBB")), Err(SizeError::UnknownUnit));
        for bad in ["", "-1", "1 ", "1\n", "0x10", "1.5", "1G"] {
            assert_eq!(mem(bad, None), Err(SizeError::NotANumber), "{bad:?}");
        }
        assert_eq!(mem("9", Some("EiB")), Err(SizeError::TooLarge));
        assert_eq!(mem("99999999999999999999999", None), Err(SizeError::TooLarge));
        let limit = |s: &str, u| parse_size_kib(s, u, SizeBound::Limit);
        assert_eq!(limit("2097152", None), Ok(Some(2_097_152)));
        // virsh memtune --hard-limit -1 writes nothing; the largest value is "unlimited".
        let (unlimited, below) = (UNLIMITED_KIB.to_string(), (UNLIMITED_KIB - 1).to_string());
        assert_eq!(limit(&unlimited, None), Ok(None));
        assert_eq!(limit(&below, None), Ok(Some(UNLIMITED_KIB - 1)));
        assert_eq!(limit("8", Some("EiB")), Err(SizeError::TooLarge));
    }
}
