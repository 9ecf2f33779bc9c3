//! The cascade: checks the submission, runs every cheap evaluator, and lets the first (the
//! workhorse, model consistency) decide when it is sure. When it is not, the cheap scores are
//! combined by a weighted geometric mean, and the judge is called when that combination falls in
//! the uncertain band or a cheap stage is unsure. A seeded draw over the task's own hash also
//! sends a sample of tasks to the judge for calibration, without changing their score.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::task::{Evaluator, Finish, Limits, SCORE_MAX, Submission, Task, Verdict, to_score};

/// Thresholds and weights of the cascade.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CascadeConfig {
    /// Input limits applied before any model runs.
    pub limits: Limits,
    /// Combined scores from here …
    pub uncertain_low: u16,
    /// … to here (inclusive) call the judge.
    pub uncertain_high: u16,
    /// Share of the judge's score in the final score when it is called to decide.
    pub judge_weight: f64,
    /// Calibration sample: tasks per thousand on which the judge runs without changing the score.
    pub calibration_per_mille: u16,
    /// The validator's seed for the calibration draw.
    pub seed: u64,
}

impl Default for CascadeConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            uncertain_low: 300,
            uncertain_high: 800,
            judge_weight: 0.4,
            calibration_per_mille: 50,
            seed: 0,
        }
    }
}

/// One evaluation with what it cost.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The combined verdict (its evidence holds every stage's).
    pub verdict: Verdict,
    /// Whether the judge ran (to decide or to calibrate).
    pub judge_called: bool,
    /// Milliseconds spent in the cheap stages.
    pub cheap_ms: f64,
    /// Milliseconds spent in the judge.
    pub judge_ms: f64,
    /// Milliseconds per stage that ran, by evaluator name.
    pub stage_ms: BTreeMap<&'static str, f64>,
}

/// Cheap evaluators with their weights, and an optional judge.
pub struct Cascade {
    cheap: Vec<(Box<dyn Evaluator>, f64)>,
    judge: Option<Box<dyn Evaluator>>,
    cfg: CascadeConfig,
}

impl Cascade {
    /// A cascade over `cheap` (evaluator, weight) stages and an optional `judge`.
    pub fn new(
        cheap: Vec<(Box<dyn Evaluator>, f64)>,
        judge: Option<Box<dyn Evaluator>>,
        cfg: CascadeConfig,
    ) -> Self {
        Self { cheap, judge, cfg }
    }

    /// The configuration.
    pub fn config(&self) -> &CascadeConfig {
        &self.cfg
    }

    /// Checks a raw submission and scores it; a refused delivery scores 0 without running models.
    pub fn score_submission(&self, sub: Submission) -> Result<Report> {
        match sub.check(&self.cfg.limits)? {
            Ok(task) => self.score(&task),
            Err(rejection) => Ok(Report {
                verdict: rejection.verdict(),
                judge_called: false,
                cheap_ms: 0.0,
                judge_ms: 0.0,
                stage_ms: BTreeMap::new(),
            }),
        }
    }

    /// Scores a checked task. A cut-short answer ([`Finish::CutShort`]) is judged by the first
    /// stage alone: the text evaluators and the judge would grade half an answer as a bad one.
    pub fn score(&self, task: &Task) -> Result<Report> {
        if task.generation.finish == Finish::CutShort
            && let Some((first, _)) = self.cheap.first()
        {
            return self.score_delivered(first.as_ref(), task);
        }
        let t0 = Instant::now();
        let mut stages = Map::new();
        let (mut log_sum, mut weight_sum, mut unsure) = (0.0, 0.0, false);
        let mut first_sure = None;
        let mut stage_ms = BTreeMap::new();
        for (i, (ev, w)) in self.cheap.iter().enumerate() {
            let ts = Instant::now();
            let v = ev.evaluate(task)?;
            stage_ms.insert(ev.name(), ts.elapsed().as_secs_f64() * 1e3);
            let x = f64::from(v.score) / f64::from(SCORE_MAX);
            log_sum += w * x.max(1e-3).ln();
            weight_sum += w;
            unsure |= v.uncertain;
            if i == 0 && !v.uncertain {
                first_sure = Some(v.score);
            }
            stages.insert(ev.name().into(), serde_json::to_value(&v).unwrap_or(Value::Null));
        }
        let combined = match first_sure {
            Some(score) => score,
            None if weight_sum > 0.0 => to_score((log_sum / weight_sum).exp()),
            None => SCORE_MAX / 2,
        };
        let cheap_ms = t0.elapsed().as_secs_f64() * 1e3;
        let in_band = (self.cfg.uncertain_low..=self.cfg.uncertain_high).contains(&combined);
        let decide = first_sure.is_none() && (in_band || unsure);
        let calibrate = !decide && self.calibration_draw(task);
        let (mut score, mut judge_ms, mut judge_called) = (combined, 0.0, false);
        if let Some(judge) = self.judge.as_ref().filter(|_| decide || calibrate) {
            let t1 = Instant::now();
            let v = judge.evaluate(task)?;
            judge_ms = t1.elapsed().as_secs_f64() * 1e3;
            stage_ms.insert(judge.name(), judge_ms);
            judge_called = true;
            if decide {
                let jw = self.cfg.judge_weight.clamp(0.0, 1.0);
                score = to_score(
                    ((1.0 - jw) * f64::from(combined) + jw * f64::from(v.score)) / f64::from(SCORE_MAX),
                );
            }
            stages.insert(judge.name().into(), serde_json::to_value(&v).unwrap_or(Value::Null));
        }
        let why = match (decide, calibrate) {
            (true, _) if in_band => "combined score in the uncertain band",
            (true, _) => "a cheap stage was uncertain",
            (false, true) => "calibration sample",
            _ if first_sure.is_some() => "first stage sure",
            _ => "cheap stages agree",
        };
        Ok(Report {
            verdict: Verdict {
                score,
                uncertain: decide && !judge_called,
                evidence: json!({ "stages": stages, "combined_cheap": combined, "judge": why, "judge_called": judge_called }),
            },
            judge_called,
            cheap_ms,
            judge_ms,
            stage_ms,
        })
    }

    /// The first stage's verdict on the tokens a cut-short answer delivered.
    fn score_delivered(&self, first: &dyn Evaluator, task: &Task) -> Result<Report> {
        let t0 = Instant::now();
        let v = first.evaluate(task)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut stages = Map::new();
        stages.insert(first.name().into(), serde_json::to_value(&v).unwrap_or(Value::Null));
        Ok(Report {
            verdict: Verdict {
                score: v.score,
                uncertain: false,
                evidence: json!({ "stages": stages, "judge": "cut short: the delivered tokens only", "judge_called": false }),
            },
            judge_called: false,
            cheap_ms: ms,
            judge_ms: 0.0,
            stage_ms: BTreeMap::from([(first.name(), ms)]),
        })
    }

    /// Whether the seeded draw puts this task in the calibration sample.
    fn calibration_draw(&self, task: &Task) -> bool {
        let mut h = Sha256::new();
        h.update(self.cfg.seed.to_le_bytes());
        h.update(task.digest());
        let d = h.finalize();
        u16::from_le_bytes([d[0], d[1]]) % 1000 < self.cfg.calibration_per_mille
    }
}
