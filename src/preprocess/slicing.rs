//! Which voxels make up each output slice: the stored order (the paper's mode), or axial
//! slices in patient orientation, found from the affine by axis permutation and flips only
//! (no resampling), as `nibabel.as_closest_canonical` does.

use crate::io::Volume;

/// One output axis: the stored axis it walks, and whether it walks it backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    pub stored: usize,
    pub flipped: bool,
}

/// Output columns, rows and slices in terms of the stored axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlicePlan {
    pub columns: Axis,
    pub rows: Axis,
    pub slices: Axis,
}

const ALL_PERMUTATIONS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

impl SlicePlan {
    /// Slice `k` as stored, rows along `j`, columns along `i`.
    pub fn stored() -> SlicePlan {
        let axis = |stored| Axis {
            stored,
            flipped: false,
        };
        SlicePlan {
            columns: axis(0),
            rows: axis(1),
            slices: axis(2),
        }
    }

    /// Axial slices from inferior to superior, columns running to the patient's left and rows
    /// to posterior (the radiological view of DICOM's LPS axes). A degenerate affine (an axis
    /// of zero length) gives no orientation: the stored order then.
    pub fn axial(affine: &[[f64; 4]; 3]) -> SlicePlan {
        let norm = |a: usize| (0..3).map(|p| affine[p][a].powi(2)).sum::<f64>().sqrt();
        if (0..3).any(|a| !(norm(a) > 0.0 && norm(a).is_finite())) {
            return SlicePlan::stored();
        }
        let weight = |p: usize, a: usize| affine[p][a].abs() / norm(a);
        // perm[p] is the stored axis closest to patient axis p (L, P, S).
        let perm = ALL_PERMUTATIONS
            .iter()
            .max_by(|x, y| {
                let score = |perm: &[usize; 3]| (0..3).map(|p| weight(p, perm[p])).sum::<f64>();
                score(x).total_cmp(&score(y))
            })
            .expect("six permutations");
        let axis = |p: usize| Axis {
            stored: perm[p],
            flipped: affine[p][perm[p]] < 0.0,
        };
        SlicePlan {
            columns: axis(0),
            rows: axis(1),
            slices: axis(2),
        }
    }

    /// Output (columns, rows, slices) counts.
    pub fn shape(&self, dims: [usize; 3]) -> [usize; 3] {
        [
            dims[self.columns.stored],
            dims[self.rows.stored],
            dims[self.slices.stored],
        ]
    }

    /// The stored `(i, j, k)` of output voxel (column, row) of slice `s`.
    pub fn voxel(&self, dims: [usize; 3], s: usize, row: usize, column: usize) -> [usize; 3] {
        let mut ijk = [0; 3];
        for (axis, at) in [(self.columns, column), (self.rows, row), (self.slices, s)] {
            ijk[axis.stored] = if axis.flipped {
                dims[axis.stored] - 1 - at
            } else {
                at
            };
        }
        ijk
    }

    /// The physical values of output slice `s`, row-major, `None` for padding.
    pub fn values(&self, volume: &Volume, s: usize, out: &mut Vec<Option<f64>>) {
        let dims = volume.dims;
        let [columns, rows, _] = self.shape(dims);
        out.clear();
        for row in 0..rows {
            for column in 0..columns {
                let [i, j, k] = self.voxel(dims, s, row, column);
                let stored = volume.samples.get(i + dims[0] * (j + dims[1] * k));
                let padded = volume.padding == Some(stored);
                out.push((!padded).then(|| volume.rescale_of(k).apply(stored)));
            }
        }
    }

    /// Where output slice `s` starts (its first voxel), in LPS mm.
    pub fn origin(&self, volume: &Volume, s: usize) -> [f64; 3] {
        let ijk = self.voxel(volume.dims, s, 0, 0);
        std::array::from_fn(|p| {
            (0..3)
                .map(|a| volume.affine[p][a] * ijk[a] as f64)
                .sum::<f64>()
                + volume.affine[p][3]
        })
    }

    /// Spacing along output columns, rows and slices, in mm.
    pub fn spacing(&self, volume: &Volume) -> [f64; 3] {
        let s = volume.spacing();
        [
            s[self.columns.stored],
            s[self.rows.stored],
            s[self.slices.stored],
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_axial_ct_is_read_as_stored() {
        // DICOM axial: IOP (1,0,0,0,1,0), slices along +z.
        let affine = [
            [0.7, 0.0, 0.0, -150.0],
            [0.0, 0.7, 0.0, -100.0],
            [0.0, 0.0, 5.0, -300.0],
        ];
        assert_eq!(SlicePlan::axial(&affine), SlicePlan::stored());
    }

    #[test]
    fn nifti_ras_and_reversed_slices_are_flipped_back() {
        // A typical NIfTI: RAS axes (x and y negative in LPS), slices stored superior first.
        let affine = [
            [-1.0, 0.0, 0.0, 90.0],
            [0.0, -1.0, 0.0, 120.0],
            [0.0, 0.0, -2.5, 50.0],
        ];
        let plan = SlicePlan::axial(&affine);
        assert_eq!(
            plan.columns,
            Axis {
                stored: 0,
                flipped: true
            }
        );
        assert_eq!(
            plan.rows,
            Axis {
                stored: 1,
                flipped: true
            }
        );
        assert_eq!(
            plan.slices,
            Axis {
                stored: 2,
                flipped: true
            }
        );
        assert_eq!(plan.voxel([4, 3, 10], 0, 0, 0), [3, 2, 9]);
    }

    #[test]
    fn a_degenerate_affine_keeps_the_stored_order() {
        let affine = [
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        assert_eq!(SlicePlan::axial(&affine), SlicePlan::stored());
    }

    #[test]
    fn a_sagittal_acquisition_is_resliced_axially() {
        // Stored i along -P (anterior), j along -S (downwards), k along +L.
        let affine = [
            [0.0, 0.0, 1.0, 0.0],
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
        ];
        let plan = SlicePlan::axial(&affine);
        assert_eq!(
            plan.columns,
            Axis {
                stored: 2,
                flipped: false
            }
        );
        assert_eq!(
            plan.rows,
            Axis {
                stored: 0,
                flipped: true
            }
        );
        assert_eq!(
            plan.slices,
            Axis {
                stored: 1,
                flipped: true
            }
        );
        assert_eq!(plan.shape([20, 30, 40]), [40, 20, 30]);
    }
}
