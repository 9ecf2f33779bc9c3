//! The cascade: checks the submission, runs every cheap evaluator (or, for a validator, stops
//! at the first when it is sure), and lets the first (the workhorse, model consistency) decide
//! when it is sure. When it is not, the cheap scores are
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
    /// Stop at the first stage when it is sure: the later stages and the calibration sample
    /// cannot change such a score, so a validator skips them (the benchmarks run them all to
    /// measure each stage).
    #[serde(default)]
    pub stop_when_sure: bool,
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
            stop_when_sure: false,
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
            if first_sure.is_some() && self.cfg.stop_when_sure {
                break;
            }
        }
        let combined = match first_sure {
            Some(score) => score,
            None if weight_sum > 0.0 => to_score((log_sum / weight_sum).exp()),
            None => SCORE_MAX / 2,
        };
        let cheap_ms = t0.elapsed().as_secs_f64() * 1e3;
        let in_band = (self.cfg.uncertain_low..=self.cfg.uncertain_high).contains(&combined);
        let decide = first_sure.is_none() && (in_band || unsure);
        // A validator's sure first stage ends the cascade: nothing after it could change the score.
        let stopped = first_sure.is_some() && self.cfg.stop_when_sure;
        let calibrate = !(decide || stopped) && self.calibration_draw(task);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// An evaluator with a fixed verdict that counts its runs.
    struct Fixed {
        name: &'static str,
        score: u16,
        uncertain: bool,
        runs: Rc<Cell<u32>>,
    }

    impl Evaluator for Fixed {
        fn name(&self) -> &'static str {
            self.name
        }
        fn evaluate(&self, _: &Task) -> Result<Verdict> {
            self.runs.set(self.runs.get() + 1);
            Ok(Verdict { score: self.score, uncertain: self.uncertain, evidence: json!({}) })
        }
    }

    fn cascade(first_uncertain: bool, stop_when_sure: bool) -> (Cascade, [Rc<Cell<u32>>; 3]) {
        let runs = [Rc::new(Cell::new(0)), Rc::new(Cell::new(0)), Rc::new(Cell::new(0))];
        let stage = |name, score, uncertain, i: usize| -> Box<dyn Evaluator> {
            Box::new(Fixed { name, score, uncertain, runs: runs[i].clone() })
        };
        let cheap =
            vec![(stage("first", 900, first_uncertain, 0), 1.0), (stage("second", 100, false, 1), 1.0)];
        // Every task in the calibration sample: only `stop_when_sure` keeps the judge out.
        let cfg = CascadeConfig { calibration_per_mille: 1000, stop_when_sure, ..CascadeConfig::default() };
        (Cascade::new(cheap, Some(stage("judge", 500, false, 2)), cfg), runs)
    }

    #[test]
    fn a_sure_first_stage_ends_a_validators_cascade() {
        let task = Task::greedy("q", "a", 16, Finish::Eos);
        let (all, runs) = cascade(false, false);
        assert_eq!(all.score(&task).unwrap().verdict.score, 900, "the sure first stage decides");
        assert_eq!(runs.each_ref().map(|r| r.get()), [1, 1, 1], "benchmarks run every stage");
        let (validator, runs) = cascade(false, true);
        let report = validator.score(&task).unwrap();
        assert_eq!(report.verdict.score, 900, "stopping early changes no score");
        assert_eq!(runs.each_ref().map(|r| r.get()), [1, 0, 0], "nothing after a sure first stage");
        assert!(!report.judge_called);
        let (unsure, runs) = cascade(true, true);
        unsure.score(&task).unwrap();
        assert_eq!(runs.each_ref().map(|r| r.get()), [1, 1, 1], "an unsure first stage goes on");
    }
}
