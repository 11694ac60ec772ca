//! The ordered, never-empty list of a log's segments; the last one is active.

use crate::segment::LogSegment;

/// Segments in base-offset order. Only the active (last) segment is appended to.
#[derive(Debug)]
pub(crate) struct SegmentList {
    rolled: Vec<LogSegment>,
    active: LogSegment,
}

impl SegmentList {
    /// Builds the list from segments in base-offset order; `None` if there are none.
    pub(crate) fn new(mut segments: Vec<LogSegment>) -> Option<SegmentList> {
        let active = segments.pop()?;
        Some(SegmentList {
            rolled: segments,
            active,
        })
    }

    pub(crate) fn active(&self) -> &LogSegment {
        &self.active
    }

    pub(crate) fn active_mut(&mut self) -> &mut LogSegment {
        &mut self.active
    }

    pub(crate) fn first(&self) -> &LogSegment {
        self.rolled.first().unwrap_or(&self.active)
    }

    pub(crate) fn len(&self) -> usize {
        self.rolled.len() + 1
    }

    pub(crate) fn get(&self, i: usize) -> Option<&LogSegment> {
        match i.cmp(&self.rolled.len()) {
            std::cmp::Ordering::Less => self.rolled.get(i),
            std::cmp::Ordering::Equal => Some(&self.active),
            std::cmp::Ordering::Greater => None,
        }
    }

    /// All segments, oldest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &LogSegment> {
        self.rolled.iter().chain(std::iter::once(&self.active))
    }

    /// Index of the segment that would hold `offset`: the last one whose base offset
    /// is at most `offset` (0 if `offset` precedes them all).
    pub(crate) fn floor(&self, offset: i64) -> usize {
        let rolled_at_or_below = self.rolled.partition_point(|s| s.base_offset() <= offset);
        if self.active.base_offset() <= offset {
            self.rolled.len()
        } else {
            rolled_at_or_below.saturating_sub(1)
        }
    }

    /// Makes `next` the active segment; the previous one becomes read-only.
    pub(crate) fn roll(&mut self, next: LogSegment) {
        let previous = std::mem::replace(&mut self.active, next);
        self.rolled.push(previous);
    }

    /// Keeps segments `0..=i` (segment `i` becomes active) and returns the rest,
    /// newest first, for deletion.
    pub(crate) fn split_off_after(&mut self, i: usize) -> Vec<LogSegment> {
        if i >= self.rolled.len() {
            return Vec::new();
        }
        let mut removed: Vec<LogSegment> = self.rolled.drain(i + 1..).collect();
        if let Some(new_active) = self.rolled.pop() {
            removed.push(std::mem::replace(&mut self.active, new_active));
        }
        removed.reverse();
        removed
    }

    /// Replaces every segment with `only`; returns the old ones, newest first.
    pub(crate) fn replace_all(&mut self, only: LogSegment) -> Vec<LogSegment> {
        let mut removed: Vec<LogSegment> = std::mem::take(&mut self.rolled);
        removed.push(std::mem::replace(&mut self.active, only));
        removed.reverse();
        removed
    }

    /// Number of non-active (rolled) segments.
    pub(crate) fn rolled_len(&self) -> usize {
        self.rolled.len()
    }

    /// Removes the `n` oldest segments (never the active one: `n` is capped at the
    /// number of rolled segments) and returns them, oldest first.
    pub(crate) fn remove_oldest(&mut self, n: usize) -> Vec<LogSegment> {
        let n = n.min(self.rolled.len());
        self.rolled.drain(..n).collect()
    }

    /// Replaces the rolled segment at `i` (same base offset, rewritten by the cleaner)
    /// and returns the old one; `None` (and `segment` dropped) if `i` is not rolled.
    pub(crate) fn replace_rolled(&mut self, i: usize, segment: LogSegment) -> Option<LogSegment> {
        let slot = self.rolled.get_mut(i)?;
        Some(std::mem::replace(slot, segment))
    }

    /// Applies `f` to every segment.
    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(&mut LogSegment)) {
        self.rolled.iter_mut().for_each(&mut f);
        f(&mut self.active);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogConfig;
    use std::path::Path;

    fn list(dir: &Path, bases: &[i64]) -> SegmentList {
        let segments = bases
            .iter()
            .map(|&b| LogSegment::create(dir, b, &LogConfig::default(), 0).unwrap())
            .collect();
        SegmentList::new(segments).unwrap()
    }

    fn bases(l: &SegmentList) -> Vec<i64> {
        l.iter().map(LogSegment::base_offset).collect()
    }

    #[test]
    fn floor_and_get() {
        let dir = tempfile::tempdir().unwrap();
        let l = list(dir.path(), &[10, 20, 30]);
        assert!(SegmentList::new(Vec::new()).is_none());
        assert_eq!(l.len(), 3);
        assert_eq!(l.first().base_offset(), 10);
        assert_eq!(l.active().base_offset(), 30);
        for (offset, index) in [
            (0, 0),
            (10, 0),
            (19, 0),
            (20, 1),
            (29, 1),
            (30, 2),
            (1_000, 2),
        ] {
            assert_eq!(l.floor(offset), index, "offset {offset}");
        }
        assert_eq!(l.get(2).map(LogSegment::base_offset), Some(30));
        assert!(l.get(3).is_none());
    }

    #[test]
    fn roll_split_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = list(dir.path(), &[0]);
        for b in [10, 20, 30] {
            l.roll(LogSegment::create(dir.path(), b, &LogConfig::default(), 0).unwrap());
        }
        assert_eq!(bases(&l), [0, 10, 20, 30]);
        assert!(l.split_off_after(3).is_empty());
        let removed: Vec<i64> = l
            .split_off_after(1)
            .iter()
            .map(LogSegment::base_offset)
            .collect();
        assert_eq!(removed, [30, 20]);
        assert_eq!(bases(&l), [0, 10]);
        assert_eq!(l.active().base_offset(), 10);
        let fresh = LogSegment::create(dir.path(), 5, &LogConfig::default(), 0).unwrap();
        let removed: Vec<i64> = l
            .replace_all(fresh)
            .iter()
            .map(LogSegment::base_offset)
            .collect();
        assert_eq!(removed, [10, 0]);
        assert_eq!(bases(&l), [5]);
    }

    #[test]
    fn remove_oldest_never_takes_the_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = list(dir.path(), &[0, 10, 20]);
        assert_eq!(l.rolled_len(), 2);
        let fresh = LogSegment::create(dir.path(), 10, &LogConfig::default(), 0).unwrap();
        assert!(l.replace_rolled(1, fresh).is_some());
        let fresh = LogSegment::create(dir.path(), 20, &LogConfig::default(), 0).unwrap();
        assert!(l.replace_rolled(2, fresh).is_none());
        let removed: Vec<i64> = l
            .remove_oldest(5)
            .iter()
            .map(LogSegment::base_offset)
            .collect();
        assert_eq!(removed, [0, 10]);
        assert_eq!(bases(&l), [20]);
    }
}
