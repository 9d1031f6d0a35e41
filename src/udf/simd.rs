//! Runtime CPU dispatch for the hot kernels: the same Rust code compiled for the baseline x86-64
//! instruction set (SSE2: two f64 lanes), for AVX2+FMA and for AVX-512, the widest the CPU offers
//! chosen when the kernel is called. The build stays portable (no `-C target-cpu`), and a kernel
//! runs with the vectors a NumPy/BLAS build would use on the same machine.
//!
//! `TESSERA_SIMD=base|avx2|avx512` caps the level (e.g. to compare results or speeds); tests use
//! [`with_level`] to run every kernel at every level the CPU has.

use std::cell::Cell;
use std::sync::OnceLock;

/// An instruction-set level a kernel can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// x86-64 baseline (or any other architecture).
    Base,
    /// AVX2 and FMA (x86-64-v3).
    Avx2,
    /// AVX-512 F/BW/DQ/VL plus AVX2 and FMA (x86-64-v4).
    Avx512,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "base" | "sse2" | "none" => Some(Level::Base),
            "avx2" => Some(Level::Avx2),
            "avx512" => Some(Level::Avx512),
            _ => None,
        }
    }
}

/// The widest level this CPU supports, capped by `TESSERA_SIMD` (detected once).
pub(crate) fn detected() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cpu = cpu_level();
        match std::env::var("TESSERA_SIMD").ok().as_deref().map(Level::parse) {
            Some(Some(cap)) => cap.min(cpu),
            Some(None) => {
                eprintln!("tessera: TESSERA_SIMD must be base, avx2 or avx512; using {cpu:?}");
                cpu
            }
            None => cpu,
        }
    })
}

#[cfg(target_arch = "x86_64")]
fn cpu_level() -> Level {
    use std::arch::is_x86_feature_detected as has;
    if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") && has!("avx2") && has!("fma") {
        Level::Avx512
    } else if has!("avx2") && has!("fma") {
        Level::Avx2
    } else {
        Level::Base
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_level() -> Level {
    Level::Base
}

thread_local! {
    static FORCED: Cell<Option<Level>> = const { Cell::new(None) };
}

/// The level kernels called from this thread use now.
pub(crate) fn level() -> Level {
    let cpu = detected();
    FORCED.with(|f| f.get()).map_or(cpu, |forced| forced.min(cpu))
}

/// Runs `f` with the kernels on this thread capped at `level` (for tests and comparisons).
#[cfg(test)]
pub(crate) fn with_level<R>(level: Level, f: impl FnOnce() -> R) -> R {
    let before = FORCED.with(|c| c.replace(Some(level)));
    let r = f();
    FORCED.with(|c| c.set(before));
    r
}

/// Defines a kernel compiled at every [`Level`] and dispatched at run time. The body is written
/// once, as an ordinary (optionally generic) function; what it calls should be `#[inline]` so that
/// it is compiled into each version.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident $(<$T:ident: $bound:path>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name $(<$T: $bound>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn kernel $(<$T: $bound>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn avx512 $(<$T: $bound>)? ($($arg: $ty),*) $(-> $ret)? { kernel $(::<$T>)? ($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2 $(<$T: $bound>)? ($($arg: $ty),*) $(-> $ret)? { kernel $(::<$T>)? ($($arg),*) }
                match $crate::udf::simd::level() {
                    // SAFETY: `level()` reports a level only when the CPU has all of its features
                    // (`is_x86_feature_detected!`), which is what calling these versions requires.
                    $crate::udf::simd::Level::Avx512 => return unsafe { avx512 $(::<$T>)? ($($arg),*) },
                    // SAFETY: as above, for AVX2 and FMA.
                    $crate::udf::simd::Level::Avx2 => return unsafe { avx2 $(::<$T>)? ($($arg),*) },
                    $crate::udf::simd::Level::Base => {}
                }
            }
            kernel $(::<$T>)? ($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// Asserts that `f` gives the same result at every level (the kernels do not reorder arithmetic
/// between levels, so "the same" is bit for bit), and returns it.
#[cfg(test)]
pub(crate) fn same_at_every_level<R: PartialEq + std::fmt::Debug>(f: impl Fn() -> R) -> R {
    let base = with_level(Level::Base, &f);
    for l in [Level::Avx2, Level::Avx512] {
        assert_eq!(with_level(l, &f), base, "kernel at {l:?} (CPU: {:?}) differs from the baseline", detected());
    }
    base
}

/// `n` pseudo-random values in `0..max` (a fixed LCG: tests are reproducible).
#[cfg(test)]
pub(crate) fn test_values(n: usize, max: u32) -> Vec<u32> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((x >> 33) % max as u64) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    multiversion! {
        fn dot(a: &[f64], b: &[f64]) -> f64 {
            a.iter().zip(b).map(|(x, y)| x * y).sum()
        }
    }

    #[test]
    fn every_level_gives_the_same_result() {
        let a: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let want: f64 = a.iter().map(|x| x * x).sum();
        for l in [Level::Base, Level::Avx2, Level::Avx512] {
            assert_eq!(with_level(l, || dot(&a, &a)), want, "{l:?}");
            assert!(with_level(l, level) <= l);
        }
        assert_eq!(Level::parse("AVX2"), Some(Level::Avx2));
        assert_eq!(Level::parse("fast"), None);
    }
}
