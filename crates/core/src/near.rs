//! Did-you-mean: the known word a mistyped one was meant to be, for the messages that name a
//! policy key or a rule id someone got slightly wrong.

/// The known word `typed` is a slip of: a letter wrong, missing, added or two swapped (two such
/// slips in a longer word), `-` for `_` (or the reverse) or another case.
pub fn near(typed: &str, known: &[&'static str]) -> Option<&'static str> {
    let plain = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let typed = plain(typed);
    known
        .iter()
        .map(|k| (slips(&typed, &plain(k)), *k))
        .filter(|&(d, k)| d <= if k.len() <= 4 { 1 } else { 2 })
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// The optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbours, each counted once.
fn slips(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Three rows: two back (for swaps), the previous one and this one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (previous[j] + 1).min(row[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut previous, row);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slips_count_each_edit_and_swap_once() {
        let known = ["mode", "exempt", "sysfs_root"];
        assert_eq!(near("mdoe", &known), Some("mode"));
        assert_eq!(near("Exmept", &known), Some("exempt"));
        assert_eq!(near("sysfs-root", &known), Some("sysfs_root"));
        // Short words allow one slip, longer ones two.
        assert_eq!(near("mod_x", &known), None);
        assert_eq!(near("exmpxt", &known), Some("exempt"));
        assert_eq!(near("colour", &known), None);
        let ids = ["hostdev-on-default-phb", "pci-bridge-on-pseries"];
        assert_eq!(
            near("hostdev_on_default_ph", &ids),
            Some("hostdev-on-default-phb")
        );
        assert_eq!(near("pci-bridge", &ids), None);
        assert_eq!(slips("exmept", "exempt"), 1);
        assert_eq!(slips("abc", "abc"), 0);
        assert_eq!(slips("", "mode"), 4);
    }
}
