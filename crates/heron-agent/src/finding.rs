//! The `submit_finding` tool: its JSON schema (given to the model) and the validation of what
//! the model submits (answered with the reasons when it fails).

use heron_core::agent::{AgentStep, Finding, StepKind};
use serde_json::{Value, json};

/// JSON schema of a finding, as offered to the model.
pub fn finding_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["severity", "verdict", "confidence", "summary", "reason", "recommendation", "evidence"],
        "properties": {
            "severity": {"type": "string", "enum": ["info", "low", "medium", "high", "critical"]},
            "verdict": {"type": "string", "enum": ["true_positive", "false_positive", "benign", "inconclusive"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "summary": {"type": "string", "minLength": 1, "maxLength": 2000},
            "reason": {"type": "string", "minLength": 1, "maxLength": 8000},
            "recommendation": {"type": "string", "minLength": 1, "maxLength": 4000},
            "evidence": {
                "type": "array", "maxItems": 50,
                "items": {"type": "string", "pattern": "^step-[0-9]+$"},
                "description": "Labels (step-N) of the tool results the finding rests on"
            }
        }
    })
}

/// Checks a submitted finding against [`finding_schema`] and against the run: every evidence
/// label must name a tool step of this run that returned a result. All problems are reported
/// at once, so the model can fix them in one go.
pub fn validate_finding(value: Value, steps: &[AgentStep]) -> Result<Finding, String> {
    let finding: Finding = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if !(0.0..=1.0).contains(&finding.confidence) || finding.confidence.is_nan() {
        problems.push(format!(
            "confidence must be between 0 and 1, got {}",
            finding.confidence
        ));
    }
    for (field, text, max) in [
        ("summary", &finding.summary, 2000),
        ("reason", &finding.reason, 8000),
        ("recommendation", &finding.recommendation, 4000),
    ] {
        if text.trim().is_empty() {
            problems.push(format!("{field} must not be empty"));
        } else if text.chars().count() > max {
            problems.push(format!("{field} is longer than {max} characters"));
        }
    }
    if finding.evidence.len() > 50 {
        problems.push("evidence lists more than 50 steps".into());
    }
    for label in &finding.evidence {
        let cited = label
            .strip_prefix("step-")
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(|n| steps.iter().find(|s| s.index == n));
        match cited {
            Some(step) if step.kind == StepKind::Tool && step.result.is_some() => {}
            Some(_) => problems.push(format!("{label} is not a tool result")),
            None => problems.push(format!("{label} is not a step of this investigation")),
        }
    }
    if problems.is_empty() {
        Ok(finding)
    } else {
        Err(problems.join("; "))
    }
}
