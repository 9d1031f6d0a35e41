//! Shapes of scans and frames, and the region of interest over the scan.

mod roi;

pub use roi::Roi;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// An n-dimensional shape in C order (last axis fastest).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// A shape from its extents.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }
    /// Number of elements (1 for a 0-d shape).
    pub fn size(&self) -> usize {
        self.0.iter().product()
    }
    /// The extents.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.0.len()
    }
    /// Parses `16x16`, `4x16x16` or `256` (also accepts `,` between numbers when the whole text is
    /// a shape, e.g. `(16, 16)`).
    ///
    /// ```
    /// use tessera::geometry::Shape;
    /// assert_eq!(Shape::parse("4x16x8").unwrap().dims(), &[4, 16, 8]);
    /// assert!(Shape::parse("4xq").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim().trim_start_matches('(').trim_end_matches(')');
        let dims: Result<Vec<usize>> = t
            .split(['x', 'X', ','])
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<usize>().map_err(|_| Error::Spec(format!("bad shape '{text}': '{p}' is not a whole number")))
            })
            .collect();
        let dims = dims?;
        if dims.is_empty() || dims.contains(&0) {
            return Err(Error::Spec(format!("bad shape '{text}': need one or more extents > 0")));
        }
        Ok(Shape(dims))
    }
    /// C-order strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.0[i + 1];
        }
        s
    }
    /// Coordinates of the flat C-order `index`.
    pub fn unravel(&self, mut index: usize) -> Vec<usize> {
        let mut out = vec![0; self.0.len()];
        for (i, d) in self.0.iter().enumerate().rev() {
            out[i] = index % d;
            index /= d;
        }
        out
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|d| d.to_string()).collect();
        write!(f, "{}", parts.join("x"))
    }
}

/// Names of the nav coordinate columns for a nav shape: `nav_y, nav_x` for a 2-D scan, `nav_0..`
/// otherwise (a 1-D scan has `nav_0`).
pub fn nav_column_names(nav: &Shape) -> Vec<String> {
    if nav.ndim() == 2 {
        vec!["nav_y".into(), "nav_x".into()]
    } else {
        (0..nav.ndim()).map(|i| format!("nav_{i}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unravel_and_strides() {
        let s = Shape::new(vec![3, 4, 5]);
        assert_eq!(s.strides(), vec![20, 5, 1]);
        assert_eq!(s.unravel(27), vec![1, 1, 2]);
        assert_eq!(s.size(), 60);
    }

    #[test]
    fn parse_rejects_zero() {
        assert!(Shape::parse("0x4").is_err());
        assert_eq!(Shape::parse("(16, 16)").unwrap().dims(), &[16, 16]);
    }
}
