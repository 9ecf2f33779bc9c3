//! Training the cross-encoder's logistic head: features are standardized, then full-batch
//! gradient descent with L2 runs for a fixed number of steps from zero weights, so the same data
//! gives the same head bit for bit on the same machine. [`save_head`] writes a head with its sha256
//! where [`Head::load`] checks it.

use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cross::FEATURES;
use crate::error::{Result, TiqeError, io_err};
use crate::head::Head;

/// Writes `head` as JSON and records its sha256 in `SHA256SUMS` beside it.
pub fn save_head(head: &Head, path: &Path) -> Result<()> {
    let bytes = serde_json::to_vec(head).map_err(|e| TiqeError::Training(e.to_string()))?;
    std::fs::write(path, &bytes).map_err(io_err(path))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let sums_path = path.with_file_name("SHA256SUMS");
    let old = std::fs::read_to_string(&sums_path).unwrap_or_default();
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| l.split_once("  ").is_none_or(|(_, f)| f != name))
        .map(str::to_string)
        .collect();
    lines.push(format!("{}  {name}", hex::encode(Sha256::digest(&bytes))));
    std::fs::write(&sums_path, lines.join("\n") + "\n").map_err(io_err(&sums_path))
}

/// Training options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    /// Gradient steps.
    pub steps: usize,
    /// Step size.
    pub learning_rate: f64,
    /// L2 penalty.
    pub l2: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { steps: 2000, learning_rate: 0.5, l2: 3e-3 }
    }
}

/// Fits a head on feature rows `x` with labels `y` (true = good answer).
pub fn fit(x: &[Vec<f32>], y: &[bool], cfg: TrainConfig, record: serde_json::Value) -> Result<Head> {
    let n = x.len();
    let d = x.first().map_or(0, Vec::len);
    if n == 0 || y.len() != n || x.iter().any(|r| r.len() != d) || !y.contains(&true) || !y.contains(&false) {
        return Err(TiqeError::Training(format!("{n} rows of width {d} with labels {}", y.len())));
    }
    let mean: Vec<f64> = (0..d).map(|j| x.iter().map(|r| f64::from(r[j])).sum::<f64>() / n as f64).collect();
    let scale: Vec<f64> = (0..d)
        .map(|j| {
            (x.iter().map(|r| (f64::from(r[j]) - mean[j]).powi(2)).sum::<f64>() / n as f64).sqrt().max(1e-6)
        })
        .collect();
    let z: Vec<Vec<f64>> =
        x.iter().map(|r| (0..d).map(|j| (f64::from(r[j]) - mean[j]) / scale[j]).collect()).collect();
    // Balance the classes so a majority of attacks does not push every score down.
    let pos = y.iter().filter(|&&v| v).count() as f64;
    let weight = |yi: bool| if yi { n as f64 / (2.0 * pos) } else { n as f64 / (2.0 * (n as f64 - pos)) };
    let (mut w, mut b) = (vec![0f64; d], 0f64);
    for _ in 0..cfg.steps {
        let (mut gw, mut gb) = (vec![0f64; d], 0f64);
        for (zi, &yi) in z.iter().zip(y) {
            let p = sigmoid(zi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + b);
            let g = (p - f64::from(u8::from(yi))) * weight(yi) / n as f64;
            gw.iter_mut().zip(zi).for_each(|(a, v)| *a += g * v);
            gb += g;
        }
        w.iter_mut().zip(&gw).for_each(|(wi, g)| *wi -= cfg.learning_rate * (g + cfg.l2 * *wi));
        b -= cfg.learning_rate * gb;
    }
    let correct = z
        .iter()
        .zip(y)
        .filter(|(zi, yi)| (sigmoid(zi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + b) > 0.5) == **yi)
        .count();
    let mut trained = record;
    if let Some(obj) = trained.as_object_mut() {
        obj.insert("samples".into(), json!(n));
        obj.insert("positives".into(), json!(pos));
        obj.insert("train_accuracy".into(), json!(correct as f64 / n as f64));
        obj.insert("steps".into(), json!(cfg.steps));
        obj.insert("l2".into(), json!(cfg.l2));
    }
    Ok(Head {
        features: FEATURES.into(),
        mean: mean.iter().map(|&v| v as f32).collect(),
        scale: scale.iter().map(|&v| v as f32).collect(),
        w: w.iter().map(|&v| v as f32).collect(),
        b: b as f32,
        trained,
    })
}

/// Out-of-fold P(good) for every row: rows are split into `folds` by their group (the prompt),
/// so a row is always scored by a head that never saw its prompt.
pub fn cross_validate(
    x: &[Vec<f32>],
    y: &[bool],
    groups: &[usize],
    folds: usize,
    cfg: TrainConfig,
) -> Result<Vec<f64>> {
    let folds = folds.max(2);
    let mut out = vec![f64::NAN; x.len()];
    for f in 0..folds {
        let train: Vec<usize> = (0..x.len()).filter(|&i| groups[i] % folds != f).collect();
        let xs: Vec<Vec<f32>> = train.iter().map(|&i| x[i].clone()).collect();
        let ys: Vec<bool> = train.iter().map(|&i| y[i]).collect();
        let head = fit(&xs, &ys, cfg, json!({}))?;
        for i in (0..x.len()).filter(|&i| groups[i] % folds == f) {
            out[i] = head.prob(&x[i]);
        }
    }
    Ok(out)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_rule_and_refuses_one_class() {
        let x: Vec<Vec<f32>> = (0..40).map(|i| vec![i as f32 / 10.0, ((i * 7) % 5) as f32]).collect();
        let y: Vec<bool> = (0..40).map(|i| i >= 20).collect();
        let h = fit(&x, &y, TrainConfig::default(), json!({})).unwrap_or_else(|e| panic!("{e}"));
        assert!(h.prob(&[3.9, 1.0]) > 0.9 && h.prob(&[0.1, 1.0]) < 0.1);
        assert!(fit(&x, &[true; 40], TrainConfig::default(), json!({})).is_err());
    }
}
