//! The passes `memgpt eval attend` and `memgpt bench attend` run: concat, and fused passes,
//! one per recompute rule, ratio and calibration of the attention to memories asked for.

use memgpt_proto::generator::v1 as gen;

/// The fused passes asked for: one per recompute rule, ratio, memory temperature and memory
/// scale (every combination).
#[derive(Debug, clap::Args)]
pub(crate) struct FusedPasses {
    /// Fused passes, one per ratio (comma-separated): the share of the memory tokens
    /// recomputed (per request; default: the generator's own ratio).
    #[arg(long, value_delimiter = ',')]
    recompute_ratio: Vec<f32>,
    /// Fused passes, one per rule (comma-separated): query (the tokens the question attends
    /// to most), deviation (the ones whose layer-1 states deviate most); default: the
    /// generator's own rule.
    #[arg(long, value_delimiter = ',', value_parser = ["query", "deviation"])]
    recompute_rule: Vec<String>,
    /// Fused passes, one per temperature of the attention to memories (comma-separated, 0.25
    /// to 4; 1: exact; default: the generator's).
    #[arg(long, value_delimiter = ',')]
    memory_temperature: Vec<f32>,
    /// Fused passes, one per scale of the attention to memories (comma-separated, 0.25 to 4;
    /// 1: exact; default: the generator's).
    #[arg(long, value_delimiter = ',')]
    memory_scale: Vec<f32>,
}

/// The values of a list flag, or one None (the generator's own) when it is empty.
fn each<T: Copy>(values: &[T]) -> Vec<Option<T>> {
    if values.is_empty() { vec![None] } else { values.iter().copied().map(Some).collect() }
}

impl FusedPasses {
    /// Concat, then one fused pass per combination (the generator's own where unset).
    pub(crate) fn passes(&self) -> anyhow::Result<Vec<Pass>> {
        if let Some(r) = self.recompute_ratio.iter().find(|r| !(0.0..=1.0).contains(*r)) {
            anyhow::bail!("--recompute-ratio: {r} is outside 0..=1");
        }
        for (flag, values) in [("--memory-temperature", &self.memory_temperature), ("--memory-scale", &self.memory_scale)] {
            if let Some(v) = values.iter().find(|v| !(0.25..=4.0).contains(*v)) {
                anyhow::bail!("{flag}: {v} is outside 0.25..=4");
            }
        }
        let rules: Vec<gen::RecomputeRule> =
            self.recompute_rule.iter().map(|r| if r == "query" { gen::RecomputeRule::Query } else { gen::RecomputeRule::Deviation }).collect();
        let mut passes = vec![Pass::CONCAT];
        for rule in each(&rules) {
            for ratio in each(&self.recompute_ratio) {
                for temperature in each(&self.memory_temperature) {
                    passes.extend(each(&self.memory_scale).into_iter().map(|scale| Pass { ratio, rule, temperature, scale, ..Pass::FUSED }));
                }
            }
        }
        Ok(passes)
    }
}

/// One pass over the questions: a mode, and in fused mode the recompute rule and ratio and
/// the calibration of the attention to memories (None: the generator's).
#[derive(Clone, Copy)]
pub(crate) struct Pass {
    pub(crate) mode: gen::AttendMode,
    pub(crate) ratio: Option<f32>,
    pub(crate) rule: Option<gen::RecomputeRule>,
    pub(crate) temperature: Option<f32>,
    pub(crate) scale: Option<f32>,
    pub(crate) extractive: bool,
    /// Recompute the question's own passage whole ([`gen::GenerateRequest::recompute_memories`]).
    pub(crate) oracle: bool,
}

impl Pass {
    pub(crate) const CONCAT: Pass = Pass { mode: gen::AttendMode::Concat, ratio: None, rule: None, temperature: None, scale: None, extractive: false, oracle: false };
    pub(crate) const FUSED: Pass = Pass { mode: gen::AttendMode::Fused, ..Pass::CONCAT };

    /// `concat`, `fused`, `fused@oracle`, or `fused@` with what the pass sets: the rule and
    /// ratio (`query:0.2`), then `:T0.9` and `:S1.5`; `/extractive` for that style.
    pub(crate) fn name(&self) -> String {
        let mut mode = match self.mode {
            gen::AttendMode::Fused if self.oracle => "fused@oracle".to_string(),
            gen::AttendMode::Fused => {
                let rule = match self.rule {
                    Some(gen::RecomputeRule::Query) => Some("query"),
                    Some(gen::RecomputeRule::Deviation) => Some("deviation"),
                    _ => None,
                };
                let mut parts: Vec<String> = match (rule, self.ratio) {
                    (Some(rule), Some(r)) => vec![format!("{rule}:{r}")],
                    (Some(rule), None) => vec![rule.to_string()],
                    (None, Some(r)) => vec![r.to_string()],
                    (None, None) => Vec::new(),
                };
                parts.extend(self.temperature.map(|t| format!("T{t}")));
                parts.extend(self.scale.map(|s| format!("S{s}")));
                if parts.is_empty() { "fused".into() } else { format!("fused@{}", parts.join(":")) }
            }
            _ => "concat".into(),
        };
        if self.extractive {
            mode.push_str("/extractive");
        }
        mode
    }

    /// A Generate request of this pass.
    pub(crate) fn request(&self, messages: Vec<gen::Message>, memories: Vec<gen::Memory>, params: gen::SamplingParams) -> gen::GenerateRequest {
        gen::GenerateRequest {
            messages,
            memories,
            attend_mode: self.mode as i32,
            recompute_ratio: self.ratio,
            recompute_rule: self.rule.map_or(0, |r| r as i32),
            memory_temperature: self.temperature,
            memory_scale: self.scale,
            params: Some(params),
            answer_style: if self.extractive { gen::AnswerStyle::Extractive } else { gen::AnswerStyle::Free } as i32,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_names_say_what_each_pass_sets() {
        assert_eq!(Pass::CONCAT.name(), "concat");
        assert_eq!(Pass::FUSED.name(), "fused");
        let query = Pass { rule: Some(gen::RecomputeRule::Query), ratio: Some(0.2), ..Pass::FUSED };
        assert_eq!(query.name(), "fused@query:0.2");
        assert_eq!(Pass { temperature: Some(0.9), scale: Some(1.5), ..query }.name(), "fused@query:0.2:T0.9:S1.5");
        assert_eq!(Pass { ratio: Some(0.5), ..Pass::FUSED }.name(), "fused@0.5");
        assert_eq!(Pass { oracle: true, extractive: true, ..query }.name(), "fused@oracle/extractive");
    }
}
