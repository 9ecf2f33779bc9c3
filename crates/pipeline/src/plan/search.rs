//! Dynamic programming over (layer boundary, set of devices used, last device).
//!
//! A state `(mask, last, j)` is "layers `0..j` are placed, on the devices in `mask`, the last
//! stage on `last`". Its value is the best cost so far: the sum of stage compute and hop times
//! for [`Objective::Latency`], the largest stage or link time for [`Objective::Throughput`].
//! The sampled token travels from the last stage back to the first (that link must exist, and
//! its latency counts for [`Objective::Latency`]), so the first device is fixed by an outer loop. Candidates are capped at [`MAX_CANDIDATES`] (the fastest),
//! which keeps the search at a few hundred million steps in the worst case.

use super::{DeviceProfile, LinkProfile, Objective, Plan, PlanError, PlanRequest, Stage};
use std::collections::{HashMap, HashSet};

/// The planner keeps at most this many devices, the fastest per layer.
pub(super) const MAX_CANDIDATES: usize = 10;

const INF: u64 = u64::MAX;

/// A placed stage: (device index, first layer, end layer).
type Placed = (usize, usize, usize);

/// Chooses devices and contiguous layer ranges for the request's objective.
pub fn plan(request: &PlanRequest) -> Result<Plan, PlanError> {
    let ctx = Context::new(request)?;
    let n = ctx.devices.len();
    let mut best: Option<(u64, usize, Vec<Placed>)> = None;
    for first in 0..n {
        if let Some((cost, stages)) = ctx.search(first) {
            let better = match &best {
                None => true,
                Some((c, s, _)) => (cost, stages.len()) < (*c, *s),
            };
            if better {
                best = Some((cost, stages.len(), stages));
            }
        }
    }
    let Some((_, _, stages)) = best else {
        let needed_bytes = ctx.memory(0, ctx.layers);
        return Err(PlanError::DoesNotFit {
            needed_bytes,
            offered_bytes: ctx.devices.iter().map(|d| d.memory_bytes).fold(0, u64::saturating_add),
            context_tokens: request.context_tokens,
        });
    };
    Ok(ctx.describe(&stages))
}

struct Context<'a> {
    request: &'a PlanRequest,
    devices: Vec<&'a DeviceProfile>,
    links: HashMap<(usize, usize), &'a LinkProfile>,
    layers: usize,
    /// `prefix_bytes[j]` = weight bytes of layers `0..j`.
    prefix_bytes: Vec<u64>,
}

impl<'a> Context<'a> {
    fn new(request: &'a PlanRequest) -> Result<Self, PlanError> {
        let layers = request.model.layer_bytes.len();
        if layers == 0 {
            return Err(PlanError::EmptyModel);
        }
        if request.devices.is_empty() {
            return Err(PlanError::NoDevices);
        }
        let mut seen = HashSet::new();
        for device in &request.devices {
            if !seen.insert(device.id.as_str()) {
                return Err(PlanError::DuplicateDevice(device.id.clone()));
            }
        }
        for link in &request.links {
            if !seen.contains(link.from.as_str()) || !seen.contains(link.to.as_str()) {
                return Err(PlanError::UnknownLinkDevice { from: link.from.clone(), to: link.to.clone() });
            }
            if link.bandwidth_bytes_per_s == 0 {
                return Err(PlanError::ZeroBandwidth { from: link.from.clone(), to: link.to.clone() });
            }
        }
        let mut devices: Vec<&DeviceProfile> = request.devices.iter().collect();
        devices.sort_by(|a, b| a.layer_time_us.cmp(&b.layer_time_us).then(a.id.cmp(&b.id)));
        devices.truncate(MAX_CANDIDATES);
        let index: HashMap<&str, usize> =
            devices.iter().enumerate().map(|(i, d)| (d.id.as_str(), i)).collect();
        let links = request
            .links
            .iter()
            .filter_map(|l| Some(((*index.get(l.from.as_str())?, *index.get(l.to.as_str())?), l)))
            .collect();
        let mut prefix_bytes = vec![0u64; layers + 1];
        for (j, bytes) in request.model.layer_bytes.iter().enumerate() {
            prefix_bytes[j + 1] = prefix_bytes[j].saturating_add(*bytes);
        }
        Ok(Context { request, devices, links, layers, prefix_bytes })
    }

    /// Memory of a stage running layers `start..end`.
    fn memory(&self, start: usize, end: usize) -> u64 {
        let model = &self.request.model;
        let kv = model
            .kv_bytes_per_token_layer
            .saturating_mul(self.request.context_tokens)
            .saturating_mul((end - start) as u64);
        let mut bytes = (self.prefix_bytes[end] - self.prefix_bytes[start]).saturating_add(kv);
        if start == 0 {
            bytes = bytes.saturating_add(model.embed_bytes);
        }
        let holds_embedding = start == 0;
        if end == self.layers && !(holds_embedding && model.head_shares_embedding) {
            bytes = bytes.saturating_add(model.head_bytes);
        }
        bytes
    }

    fn compute_us(&self, device: usize, start: usize, end: usize) -> u64 {
        let d = self.devices[device];
        let head = if end == self.layers { d.head_time_us } else { 0 };
        d.layer_time_us.saturating_mul((end - start) as u64).saturating_add(head)
    }

    /// Time for one token's hidden state to cross `from -> to`, or `None` without a link.
    fn hop_us(&self, from: usize, to: usize, bytes: u64) -> Option<(u64, u64)> {
        let link = self.links.get(&(from, to))?;
        let transfer = bytes.saturating_mul(1_000_000).div_ceil(link.bandwidth_bytes_per_s);
        Some((link.latency_us, transfer))
    }

    fn combine(&self, acc: u64, hop: (u64, u64), stage: u64) -> u64 {
        match self.request.objective {
            Objective::Latency => acc.saturating_add(hop.0).saturating_add(hop.1).saturating_add(stage),
            Objective::Throughput => acc.max(hop.1).max(stage),
        }
    }

    /// Best plan whose first stage runs on `first`.
    fn search(&self, first: usize) -> Option<(u64, Vec<Placed>)> {
        let n = self.devices.len();
        let l = self.layers;
        let states = (1usize << n) * n * (l + 1);
        let at = |mask: usize, last: usize, j: usize| (mask * n + last) * (l + 1) + j;
        let mut cost = vec![INF; states];
        // Parent of a state: (previous last device, previous boundary); `usize::MAX` for a first stage.
        let mut parent = vec![(usize::MAX, usize::MAX); states];
        for j in 1..=l {
            if self.memory(0, j) > self.devices[first].memory_bytes {
                break;
            }
            cost[at(1 << first, first, j)] = self.compute_us(first, 0, j);
        }
        let hidden = self.request.model.hidden_bytes_per_token;
        // Masks only grow, so visiting them in increasing order sees every predecessor first.
        for mask in 1usize..(1 << n) {
            for last in (0..n).filter(|d| mask & (1 << d) != 0) {
                for i in 1..l {
                    let here = cost[at(mask, last, i)];
                    if here == INF {
                        continue;
                    }
                    for next in (0..n).filter(|d| mask & (1 << d) == 0) {
                        let Some(hop) = self.hop_us(last, next, hidden) else { continue };
                        for j in i + 1..=l {
                            if self.memory(i, j) > self.devices[next].memory_bytes {
                                break;
                            }
                            let value = self.combine(here, hop, self.compute_us(next, i, j));
                            let slot = at(mask | (1 << next), next, j);
                            if value < cost[slot] {
                                cost[slot] = value;
                                parent[slot] = (last, i);
                            }
                        }
                    }
                }
            }
        }
        let mut best: Option<(u64, u32, usize, usize)> = None;
        for mask in 1usize..(1 << n) {
            for last in (0..n).filter(|d| mask & (1 << d) != 0) {
                let mut value = cost[at(mask, last, l)];
                if value == INF {
                    continue;
                }
                if first != last {
                    // The sampled token (a few bytes) goes back to the first stage.
                    let Some((latency, _)) = self.hop_us(last, first, 4) else { continue };
                    if self.request.objective == Objective::Latency {
                        value = value.saturating_add(latency);
                    }
                }
                let key = (value, mask.count_ones(), mask, last);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        let (value, _, mut mask, mut last) = best?;
        let mut stages = Vec::new();
        let mut j = l;
        loop {
            let (prev_last, i) = parent[at(mask, last, j)];
            let start = if prev_last == usize::MAX { 0 } else { i };
            stages.push((last, start, j));
            if prev_last == usize::MAX {
                break;
            }
            mask &= !(1 << last);
            last = prev_last;
            j = i;
        }
        stages.reverse();
        Some((value, stages))
    }

    fn describe(&self, stages: &[Placed]) -> Plan {
        let hidden = self.request.model.hidden_bytes_per_token;
        let mut latency = 0u64;
        let mut bottleneck = 0u64;
        let mut out = Vec::with_capacity(stages.len());
        for (k, &(device, start, end)) in stages.iter().enumerate() {
            let compute_us = self.compute_us(device, start, end);
            latency = latency.saturating_add(compute_us);
            bottleneck = bottleneck.max(compute_us);
            if k > 0 {
                let (hop_latency, transfer) =
                    self.hop_us(stages[k - 1].0, device, hidden).unwrap_or((INF, INF));
                latency = latency.saturating_add(hop_latency).saturating_add(transfer);
                bottleneck = bottleneck.max(transfer);
            }
            out.push(Stage {
                device: self.devices[device].id.clone(),
                layers: start..end,
                memory_bytes: self.memory(start, end),
                compute_us,
            });
        }
        if let (Some(first), Some(last)) = (stages.first(), stages.last())
            && first.0 != last.0
        {
            latency = latency.saturating_add(self.hop_us(last.0, first.0, 4).map_or(INF, |h| h.0));
        }
        let best_single_latency_us = (0..self.devices.len())
            .filter(|&d| self.memory(0, self.layers) <= self.devices[d].memory_bytes)
            .map(|d| self.compute_us(d, 0, self.layers))
            .min();
        Plan { stages: out, token_latency_us: latency, bottleneck_us: bottleneck, best_single_latency_us }
    }
}
