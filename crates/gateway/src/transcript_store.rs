//! Where transcripts are kept: a bounded store by task (memory, plus an optional directory that
//! survives restarts), and the [`Draft`] a request starts before its output is known. The record
//! format itself is `polylink_protocol::Transcript`.

use polylink_protocol::{Ending, GenerationParams, Prompt, Transcript};
use polylink_types::TaskId;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest transcript file read back from the data directory, bytes.
const FILE_BYTES_MAX: u64 = 4 << 20;

/// A transcript waiting for its output; made when the generation starts.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    model: String,
    prompt: Prompt,
    prompt_ids: Vec<u32>,
    params: GenerationParams,
}

impl Draft {
    /// The request's side of the transcript.
    pub(crate) fn new(model: &str, prompt: &Prompt, prompt_ids: &[u32], params: GenerationParams) -> Self {
        Self { model: model.to_string(), prompt: prompt.clone(), prompt_ids: prompt_ids.to_vec(), params }
    }

    /// The whole transcript once the output is known.
    pub(crate) fn finish(
        self,
        task: TaskId,
        output: String,
        output_ids: Vec<u32>,
        finish: Ending,
    ) -> Transcript {
        let t =
            Transcript::new(task, &self.model, &self.prompt, &self.prompt_ids, self.params, output, finish);
        Transcript { output_ids, ..t }
    }
}

/// Where transcripts live and how many are kept.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Transcripts kept in memory (and on disk), newest first out of the bound last.
    pub entries_max: usize,
    /// Directory that also keeps them as `<task>.json` (survives restarts), if any.
    pub dir: Option<PathBuf>,
    /// Fetch signatures remembered per committee member (the replay window).
    pub fetches_per_key_max: usize,
    /// How often the transcripts of tasks the chain has closed (settled or reclaimed: no committee
    /// will fetch them again) are looked for.
    pub sweep_every: std::time::Duration,
    /// How long a closed task's transcript is still kept after a sweep first found it closed (a
    /// late reader, such as the user checking what was scored, still finds it).
    pub keep_closed_for: std::time::Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            entries_max: 10_000,
            dir: None,
            fetches_per_key_max: crate::transcripts::SEEN_PER_KEY_MAX,
            sweep_every: std::time::Duration::from_secs(30),
            keep_closed_for: std::time::Duration::from_secs(60),
        }
    }
}

/// A bounded store of transcripts by task: the oldest go first.
pub struct TranscriptStore {
    cfg: StoreConfig,
    order: VecDeque<TaskId>,
    map: HashMap<TaskId, Arc<Transcript>>,
}

impl TranscriptStore {
    /// An empty store; with a directory, the transcripts already there are indexed (oldest first).
    pub fn open(cfg: StoreConfig) -> std::io::Result<Self> {
        let mut store = Self { cfg, order: VecDeque::new(), map: HashMap::new() };
        if let Some(dir) = store.cfg.dir.clone() {
            std::fs::create_dir_all(&dir)?;
            let mut found: Vec<(SystemTime, TaskId)> = Vec::new();
            for entry in std::fs::read_dir(&dir)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(task) = name.strip_suffix(".json").and_then(|t| TaskId::from_str(t).ok()) else {
                    continue;
                };
                let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(UNIX_EPOCH);
                found.push((modified, task));
            }
            found.sort();
            store.order = found.into_iter().map(|(_, t)| t).collect();
            store.evict();
        }
        Ok(store)
    }

    fn file(&self, task: &TaskId) -> Option<PathBuf> {
        self.cfg.dir.as_ref().map(|d| d.join(format!("{task}.json")))
    }

    /// Keeps `t` (replacing an earlier one of the same task), evicting the oldest past the bound.
    pub fn insert(&mut self, t: Transcript) -> std::io::Result<()> {
        let task = t.task;
        if let Some(path) = self.file(&task) {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&t).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, &path)?;
        }
        if self.map.insert(task, Arc::new(t)).is_none() && !self.order.contains(&task) {
            self.order.push_back(task);
        }
        self.evict();
        Ok(())
    }

    fn evict(&mut self) {
        while self.order.len() > self.cfg.entries_max.max(1) {
            let Some(old) = self.order.pop_front() else { break };
            self.map.remove(&old);
            if let Some(path) = self.file(&old) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// The transcript of `task`, from memory or the directory.
    pub fn get(&self, task: &TaskId) -> Option<Arc<Transcript>> {
        if let Some(t) = self.map.get(task) {
            return Some(t.clone());
        }
        let path = self.file(task)?;
        if std::fs::metadata(&path).ok()?.len() > FILE_BYTES_MAX {
            return None;
        }
        let t: Transcript = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (t.task == *task).then(|| Arc::new(t))
    }

    /// Deletes the transcript of `task` (memory and file); whether there was one.
    pub fn remove(&mut self, task: &TaskId) -> bool {
        let held = self.map.remove(task).is_some() | self.order.contains(task);
        self.order.retain(|t| t != task);
        if let Some(path) = self.file(task) {
            let _ = std::fs::remove_file(path);
        }
        held
    }

    /// The tasks held, oldest first, at most `n`.
    pub fn oldest(&self, n: usize) -> Vec<TaskId> {
        self.order.iter().take(n).copied().collect()
    }

    /// Transcripts held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(i: u8) -> Transcript {
        let params = GenerationParams { max_tokens: 8, temperature: 0.0, top_p: 1.0, seed: 0, task: None };
        Draft::new("m", &Prompt::Text(format!("p{i}")), &[1, 2, u32::from(i)], params).finish(
            TaskId::digest(&[&[i]]),
            format!("out {i}"),
            Vec::new(),
            Ending::Stop,
        )
    }

    #[test]
    fn store_is_bounded_and_survives_a_restart_from_its_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cfg =
            StoreConfig { entries_max: 2, dir: Some(dir.path().to_path_buf()), ..StoreConfig::default() };
        let mut store = TranscriptStore::open(cfg.clone()).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            store.insert(transcript(i)).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(store.len(), 2);
        assert!(store.get(&transcript(0).task).is_none(), "the oldest is evicted");
        let reopened = TranscriptStore::open(cfg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reopened.len(), 2);
        assert_eq!(reopened.get(&transcript(2).task).as_deref(), Some(&transcript(2)));
        let mut reopened = reopened;
        assert_eq!(reopened.oldest(1), vec![transcript(1).task]);
        assert!(reopened.remove(&transcript(1).task));
        assert!(!reopened.remove(&transcript(1).task));
        assert_eq!(reopened.len(), 1);
        let again = TranscriptStore::open(StoreConfig {
            dir: Some(dir.path().to_path_buf()),
            ..StoreConfig::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.oldest(10), vec![transcript(2).task], "a deleted transcript is gone from disk too");
    }
}
