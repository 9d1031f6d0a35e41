//! The region of interest: a bitmask over the nav grid.

/// Which frames of the nav grid a query selects (one bit per frame, flat C-order nav index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roi {
    bits: Vec<u64>,
    len: usize,
    count: usize,
}

impl Roi {
    /// Every frame selected.
    pub fn all(len: usize) -> Self {
        let mut bits = vec![u64::MAX; len.div_ceil(64)];
        if !len.is_multiple_of(64)
            && let Some(last) = bits.last_mut()
        {
            *last = (1u64 << (len % 64)) - 1;
        }
        Roi { bits, len, count: len }
    }
    /// No frame selected.
    pub fn none(len: usize) -> Self {
        Roi { bits: vec![0; len.div_ceil(64)], len, count: 0 }
    }
    /// From one bool per frame.
    pub fn from_bools(mask: impl IntoIterator<Item = bool>) -> Self {
        let mut roi = Roi::none(0);
        for (i, b) in mask.into_iter().enumerate() {
            if i % 64 == 0 {
                roi.bits.push(0);
            }
            if b {
                roi.bits[i / 64] |= 1 << (i % 64);
                roi.count += 1;
            }
            roi.len = i + 1;
        }
        roi
    }
    /// Selects or deselects frame `i`.
    pub fn set(&mut self, i: usize, value: bool) {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let was = self.bits[w] & b != 0;
        if value && !was {
            self.bits[w] |= b;
            self.count += 1;
        } else if !value && was {
            self.bits[w] &= !b;
            self.count -= 1;
        }
    }
    /// Selects frames `start..start + len` (a run), a word at a time.
    pub fn select_run(&mut self, start: usize, len: usize) {
        let end = (start + len).min(self.len);
        let mut i = start;
        while i < end {
            let (w, lo) = (i / 64, i % 64);
            let hi = (end - w * 64).min(64);
            let bits = (u64::MAX >> (64 - (hi - lo))) << lo;
            self.count += (bits & !self.bits[w]).count_ones() as usize;
            self.bits[w] |= bits;
            i = w * 64 + hi;
        }
    }
    /// Whether frame `i` is selected.
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bits[i / 64] & (1 << (i % 64)) != 0
    }
    /// Number of frames in the nav grid.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the nav grid is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Number of selected frames.
    pub fn count(&self) -> usize {
        self.count
    }
    /// Intersection with another ROI of the same length.
    pub fn and(&mut self, other: &Roi) {
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a &= b;
        }
        self.count = self.bits.iter().map(|w| w.count_ones() as usize).sum();
    }
    /// Runs `(start, len)` of consecutive selected frames, in order.
    pub fn runs(&self) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < self.len {
            let w = self.bits[i / 64] >> (i % 64);
            if w == 0 {
                i = (i / 64 + 1) * 64;
                continue;
            }
            i += w.trailing_zeros() as usize;
            let start = i;
            while i < self.len && self.get(i) {
                i += 1;
            }
            runs.push((start, i - start));
        }
        runs
    }
    /// Splits the selected frames into `n` parts of (nearly) equal frame count; each part is a list of
    /// runs. Parts may be empty when fewer frames than parts are selected.
    pub fn split(&self, n: usize) -> Vec<Vec<(usize, usize)>> {
        self.split_aligned(n, 1)
    }

    /// Like [`Roi::split`], but parts begin at frame indices that are multiples of `align` (the
    /// frames of one chunk of a file stay in one part), so parts are as equal as that allows.
    pub fn split_aligned(&self, n: usize, align: usize) -> Vec<Vec<(usize, usize)>> {
        let (n, align) = (n.max(1), align.max(1));
        let runs = self.runs();
        // first frame index of part p: the (p·count/n)-th selected frame, rounded down to `align`
        let mut bounds = Vec::with_capacity(n + 1);
        let (mut run, mut before) = (0, 0); // runs[run] starts after `before` selected frames
        for p in 0..n {
            let target = p * self.count / n;
            while run < runs.len() && before + runs[run].1 <= target {
                before += runs[run].1;
                run += 1;
            }
            let frame = if run < runs.len() { runs[run].0 + (target - before) } else { self.len };
            bounds.push(frame / align * align);
        }
        bounds[0] = 0;
        bounds.push(self.len);
        let mut parts: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        let mut part = 0;
        for (mut start, len) in runs {
            let end = start + len;
            while start < end {
                while bounds[part + 1] <= start {
                    part += 1;
                }
                let stop = end.min(bounds[part + 1]);
                parts[part].push((start, stop - start));
                start = stop;
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_split() {
        let roi = Roi::from_bools((0..200).map(|i| !(50..120).contains(&i) && i % 7 != 3));
        let runs = roi.runs();
        let n: usize = runs.iter().map(|r| r.1).sum();
        assert_eq!(n, roi.count());
        for parts in 1..6 {
            let split = roi.split(parts);
            let sizes: Vec<usize> = split.iter().map(|p| p.iter().map(|r| r.1).sum()).collect();
            assert_eq!(sizes.iter().sum::<usize>(), roi.count());
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            let flat: Vec<usize> = split.iter().flatten().flat_map(|&(s, l)| s..s + l).collect();
            let expect: Vec<usize> = (0..200).filter(|&i| roi.get(i)).collect();
            assert_eq!(flat, expect);
        }
    }

    #[test]
    fn all_and_set() {
        let mut r = Roi::all(65);
        assert_eq!(r.count(), 65);
        r.set(64, false);
        r.set(64, false);
        assert_eq!(r.count(), 64);
        assert_eq!(r.runs(), vec![(0, 64)]);
        assert_eq!(Roi::none(10).split(3), vec![vec![], vec![], vec![]]);
    }

    #[test]
    fn select_run_sets_words_and_count() {
        for (len, runs) in [(200, vec![(3, 5), (60, 70), (0, 1), (62, 3)]), (64, vec![(0, 64)]), (130, vec![(63, 67)])]
        {
            let mut r = Roi::none(len);
            for &(s, l) in &runs {
                r.select_run(s, l);
            }
            let want = Roi::from_bools((0..len).map(|i| runs.iter().any(|&(s, l)| (s..s + l).contains(&i))));
            assert_eq!(r, want, "{runs:?}");
        }
    }

    #[test]
    fn aligned_split_starts_parts_at_multiples() {
        let roi = Roi::from_bools((0..203).map(|i| i % 11 != 4));
        for align in [1, 4, 10, 64, 500] {
            for parts in 1..7 {
                let split = roi.split_aligned(parts, align);
                let flat: Vec<usize> = split.iter().flatten().flat_map(|&(s, l)| s..s + l).collect();
                let expect: Vec<usize> = (0..203).filter(|&i| roi.get(i)).collect();
                assert_eq!(flat, expect, "align {align}, parts {parts}");
                for p in split.iter().skip(1).filter(|p| !p.is_empty()) {
                    // a part starts at an aligned index or where the ROI resumes after a gap
                    let s = p[0].0;
                    assert!(s % align == 0 || !roi.get(s - 1), "align {align}: part starts at {s}");
                }
            }
        }
    }
}
