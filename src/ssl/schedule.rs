//! The paper's learning-rate schedule: lightning-bolts' `linear_warmup_decay` (linear warmup,
//! then a cosine to 0, with no clamp past its end), either as the paper meant it or as its
//! code ran it.

/// Which reading of the paper's schedule a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// Warmup over `warmup_epochs` epochs and the cosine over the whole run, in steps.
    Intended,
    /// What the paper's code computes: its steps per epoch are still 1 when the scheduler is
    /// built, so the warmup is `warmup_epochs` steps and the cosine period `2 (epochs -
    /// warmup_epochs)` steps, repeating through the run (less-is-more.md §3.6).
    AsCoded,
}

impl ScheduleKind {
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Intended => "intended",
            ScheduleKind::AsCoded => "as-coded",
        }
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<ScheduleKind, String> {
        match s {
            "intended" => Ok(ScheduleKind::Intended),
            "as-coded" => Ok(ScheduleKind::AsCoded),
            other => Err(format!(
                "`{other}` is not a schedule: use intended or as-coded"
            )),
        }
    }
}

/// The learning rate of every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f64,
    /// Steps of linear warmup, and the step where the cosine reaches 0.
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    /// The schedule of a run of `epochs` epochs of `steps_per_epoch` steps with
    /// `warmup_epochs` of warmup.
    pub fn new(
        kind: ScheduleKind,
        base_lr: f64,
        warmup_epochs: usize,
        epochs: usize,
        steps_per_epoch: usize,
    ) -> Schedule {
        let per_epoch = match kind {
            ScheduleKind::Intended => steps_per_epoch,
            ScheduleKind::AsCoded => 1,
        };
        Schedule {
            kind,
            base_lr,
            warmup_steps: warmup_epochs * per_epoch,
            total_steps: epochs * per_epoch,
        }
    }

    /// bolts' `linear_warmup_decay(warmup, total, cosine=True)(step)` times the base rate.
    pub fn lr(&self, step: usize) -> f64 {
        let factor = if step < self.warmup_steps {
            step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
            let progress = (step - self.warmup_steps) as f64 / span as f64;
            0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        };
        self.base_lr * factor
    }
}
