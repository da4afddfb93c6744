//! The paper's augmentation: a random crop of the original size from the image zero-padded by
//! `pad` pixels on each side (torchvision's `RandomCrop(size, padding=pad)`), then a
//! horizontal flip with probability one half (`RandomHorizontalFlip()`), and the rendering
//! of one image, augmented or not, into normalised `f32` values.
//!
//! Invariant: padding is applied to the raw image, before normalisation, as torchvision pads
//! the PIL image; so a padded pixel becomes `(0 − mean) / std`, exactly what a black pixel of
//! the image would become. A draw is a pure function of the generator it is given.

use crate::rng::Rng;

/// Which augmentations to apply to training images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Zero padding on each side before the random crop; 0 disables the crop.
    pub pad: usize,
    /// Whether to flip horizontally with probability one half.
    pub flip: bool,
}

impl Augment {
    /// The paper's CIFAR augmentation: 4-pixel padding, random crop, horizontal flip.
    pub fn paper() -> Augment {
        Augment { pad: 4, flip: true }
    }

    /// Draws the crop offset and the flip for one image.
    pub fn draw(&self, rng: &mut Rng) -> Draw {
        let span = 2 * self.pad as u64 + 1;
        let pad = self.pad as i64;
        // Row first, then column, then the flip: a fixed order keeps draws reproducible.
        let shift_y = rng.below(span) as i64 - pad;
        let shift_x = rng.below(span) as i64 - pad;
        let flip = self.flip && rng.coin();
        Draw {
            shift_y: shift_y as isize,
            shift_x: shift_x as isize,
            flip,
        }
    }
}

/// One image's augmentation: output pixel `(y, x)` reads input pixel
/// `(y + shift_y, x' + shift_x)` where `x' = W − 1 − x` when flipped and `x` otherwise;
/// reads outside the image see zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Draw {
    /// Vertical offset of the crop window, in `−pad..=pad`.
    pub shift_y: isize,
    /// Horizontal offset of the crop window, in `−pad..=pad`.
    pub shift_x: isize,
    /// Whether the crop is mirrored left to right.
    pub flip: bool,
}

impl Draw {
    /// No crop offset and no flip: the image as it is.
    pub fn identity() -> Draw {
        Draw::default()
    }
}

/// Writes image `image` (`[C, H, W]` raw bytes) into `out` (`C * H * W` values), augmented by
/// `draw` and normalised through `tables` (one 256-entry table per channel).
pub fn render(image: &[u8], shape: [usize; 3], draw: Draw, tables: &[[f32; 256]], out: &mut [f32]) {
    let [channels, height, width] = shape;
    for channel in 0..channels {
        let table = &tables[channel];
        let plane = &image[channel * height * width..(channel + 1) * height * width];
        let out_plane = &mut out[channel * height * width..(channel + 1) * height * width];
        for (y, out_row) in out_plane.chunks_exact_mut(width).enumerate() {
            let source_y = y as isize + draw.shift_y;
            if source_y < 0 || source_y >= height as isize {
                out_row.fill(table[0]);
                continue;
            }
            let row = &plane[source_y as usize * width..(source_y as usize + 1) * width];
            for (x, value) in out_row.iter_mut().enumerate() {
                let crop_x = if draw.flip { width - 1 - x } else { x };
                let source_x = crop_x as isize + draw.shift_x;
                let byte = if source_x < 0 || source_x >= width as isize {
                    0
                } else {
                    row[source_x as usize]
                };
                *value = table[usize::from(byte)];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Normalization;

    /// A 1x3x4 image whose pixel (y, x) holds `10·(y+1) + x + 1`, so no pixel is zero.
    fn numbered() -> Vec<u8> {
        (0..3)
            .flat_map(|y| (0..4).map(move |x| 10 * (y + 1) + x + 1))
            .collect()
    }

    fn rendered(draw: Draw) -> Vec<f32> {
        let tables = Normalization::unit(1).table();
        let mut out = vec![0.0; 12];
        render(&numbered(), [1, 3, 4], draw, &tables, &mut out);
        out.iter().map(|value| (value * 255.0).round()).collect()
    }

    #[test]
    fn identity_draw_copies_the_image() {
        let expected: Vec<f32> = numbered().iter().map(|&byte| f32::from(byte)).collect();
        assert_eq!(rendered(Draw::identity()), expected);
    }

    #[test]
    fn flip_mirrors_each_row() {
        let flipped = rendered(Draw {
            flip: true,
            ..Draw::identity()
        });
        assert_eq!(&flipped[..4], &[14.0, 13.0, 12.0, 11.0]);
        assert_eq!(&flipped[8..], &[34.0, 33.0, 32.0, 31.0]);
    }

    #[test]
    fn crop_shifts_the_window_and_fills_with_padding() {
        // Window one row down and two columns right: row 2 and columns 2.. of the input
        // move to the top left, the rest is the zero padding.
        let shifted = rendered(Draw {
            shift_y: 1,
            shift_x: 2,
            flip: false,
        });
        assert_eq!(&shifted[..4], &[23.0, 24.0, 0.0, 0.0]);
        assert_eq!(&shifted[4..8], &[33.0, 34.0, 0.0, 0.0]);
        assert_eq!(&shifted[8..], &[0.0; 4]);

        let up_left = rendered(Draw {
            shift_y: -1,
            shift_x: -1,
            flip: true,
        });
        assert_eq!(&up_left[..4], &[0.0; 4]);
        // Output row 1 reads input row 0 (11 12 13 14) mirrored through a window one column
        // left of the image, so 14 falls outside and padding enters on the right.
        assert_eq!(&up_left[4..8], &[13.0, 12.0, 11.0, 0.0]);
    }

    #[test]
    fn padding_normalises_like_a_black_pixel() {
        let tables = Normalization::for_kind(crate::data::DatasetKind::Mnist).table();
        let mut out = vec![0.0; 12];
        render(
            &numbered(),
            [1, 3, 4],
            Draw {
                shift_y: 3,
                ..Draw::identity()
            },
            &tables,
            &mut out,
        );
        assert!(out.iter().all(|&value| value == tables[0][0]));
    }

    #[test]
    fn draws_stay_within_the_padding_and_cover_it() {
        let augment = Augment::paper();
        let mut rng = Rng::seed_from(11);
        let mut seen_shifts = std::collections::BTreeSet::new();
        let mut flips = 0;
        for _ in 0..2000 {
            let draw = augment.draw(&mut rng);
            assert!((-4..=4).contains(&draw.shift_y) && (-4..=4).contains(&draw.shift_x));
            seen_shifts.insert(draw.shift_y);
            flips += usize::from(draw.flip);
        }
        assert_eq!(seen_shifts.len(), 9);
        assert!((900..1100).contains(&flips), "{flips} flips");

        let no_flip = Augment {
            pad: 2,
            flip: false,
        };
        assert!((0..100).all(|_| !no_flip.draw(&mut rng).flip));
        let no_crop = Augment { pad: 0, flip: true };
        let draw = no_crop.draw(&mut rng);
        assert_eq!((draw.shift_y, draw.shift_x), (0, 0));
    }

    #[test]
    fn equal_generators_give_equal_draws() {
        let augment = Augment::paper();
        let draws = |seed| {
            let mut rng = Rng::seed_from(seed);
            (0..50).map(|_| augment.draw(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draws(5), draws(5));
        assert_ne!(draws(5), draws(6));
    }
}
