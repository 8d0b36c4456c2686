//! Agents are files: `prompts/agents/<name>.md`, YAML front matter (the intents the agent serves,
//! the knowledge tags it may read, its handoff threshold, tone, tools, whether a disclaimer is
//! appended, its reply template) followed by its system prompt. Adding an agent is adding a file;
//! a malformed file stops start-up with the file name and the problem.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// One specialist agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    /// The file name without `.md`.
    pub name: String,
    pub intents: Vec<String>,
    pub knowledge_tags: Vec<String>,
    /// Below this confidence the conversation is handed to a person.
    pub handoff_threshold: f32,
    pub tone: String,
    pub tools: Vec<String>,
    /// Append the tenant's disclaimer to this agent's answers.
    pub disclaimer: bool,
    /// How an answer is wrapped; `{answer}` is replaced.
    pub reply: String,
    /// The system prompt (`{business}` is filled in).
    pub system_prompt: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    intents: Vec<String>,
    #[serde(default)]
    knowledge_tags: Vec<String>,
    #[serde(default = "default_threshold")]
    handoff_threshold: f32,
    #[serde(default)]
    tone: String,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    disclaimer: bool,
    #[serde(default = "default_reply")]
    reply: String,
}

fn default_threshold() -> f32 {
    0.7
}

fn default_reply() -> String {
    "{answer}".to_owned()
}

/// The tools an agent may name.
pub const KNOWN_TOOLS: &[&str] = &["schedule_visit"];

/// Why an agent file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct AgentFileError {
    pub file: String,
    pub problem: String,
}

/// Parses one agent file's text.
pub fn parse_agent(name: &str, text: &str) -> Result<AgentSpec, String> {
    let text = text.trim_start_matches('\u{feff}');
    let rest = text
        .strip_prefix("---")
        .ok_or("the file must start with `---` and YAML front matter")?;
    let (front, body) = rest
        .split_once("\n---")
        .ok_or("the front matter is not closed by a `---` line")?;
    let front: FrontMatter =
        serde_saphyr::from_str(front).map_err(|e| format!("front matter: {e}"))?;
    if front.intents.is_empty() {
        return Err("`intents` must name at least one intent".into());
    }
    if !(0.0..=1.0).contains(&front.handoff_threshold) {
        return Err("`handoff_threshold` must be between 0 and 1".into());
    }
    if let Some(tool) = front
        .tools
        .iter()
        .find(|t| !KNOWN_TOOLS.contains(&t.as_str()))
    {
        return Err(format!(
            "unknown tool `{tool}` (known: {})",
            KNOWN_TOOLS.join(", ")
        ));
    }
    if !front.reply.contains("{answer}") {
        return Err("`reply` must contain `{answer}`".into());
    }
    let system_prompt = body.trim_start_matches(['-', '\r']).trim().to_owned();
    if system_prompt.is_empty() {
        return Err("the system prompt after the front matter is empty".into());
    }
    Ok(AgentSpec {
        name: name.to_owned(),
        intents: front.intents,
        knowledge_tags: front.knowledge_tags,
        handoff_threshold: front.handoff_threshold,
        tone: front.tone,
        tools: front.tools,
        disclaimer: front.disclaimer,
        reply: front.reply,
        system_prompt,
    })
}

/// Every agent, and which serves each intent.
#[derive(Debug, Clone, Default)]
pub struct AgentRegistry {
    agents: BTreeMap<String, AgentSpec>,
    by_intent: BTreeMap<String, String>,
}

impl AgentRegistry {
    /// Loads `dir/*.md`. Two agents serving one intent is an error too.
    pub fn load(dir: &Path) -> Result<Self, AgentFileError> {
        let mut registry = Self::default();
        let entries = std::fs::read_dir(dir).map_err(|e| AgentFileError {
            file: dir.display().to_string(),
            problem: format!("cannot read the agents folder: {e}"),
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        paths.sort();
        for path in paths {
            let file = path.display().to_string();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let text = std::fs::read_to_string(&path).map_err(|e| AgentFileError {
                file: file.clone(),
                problem: e.to_string(),
            })?;
            let spec = parse_agent(&name, &text).map_err(|problem| AgentFileError {
                file: file.clone(),
                problem,
            })?;
            registry
                .add(spec)
                .map_err(|problem| AgentFileError { file, problem })?;
        }
        Ok(registry)
    }

    /// Adds an agent; refuses an intent another agent already serves.
    pub fn add(&mut self, spec: AgentSpec) -> Result<(), String> {
        for intent in &spec.intents {
            if let Some(other) = self.by_intent.get(intent) {
                return Err(format!(
                    "intent `{intent}` is already served by agent `{other}`"
                ));
            }
        }
        for intent in &spec.intents {
            self.by_intent.insert(intent.clone(), spec.name.clone());
        }
        self.agents.insert(spec.name.clone(), spec);
        Ok(())
    }

    /// The agent serving `intent`.
    pub fn for_intent(&self, intent: &str) -> Option<&AgentSpec> {
        self.by_intent.get(intent).and_then(|n| self.agents.get(n))
    }

    pub fn get(&self, name: &str) -> Option<&AgentSpec> {
        self.agents.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "---\nintents: [pricing]\nknowledge_tags: [pricing]\nhandoff_threshold: 0.6\ntools: [schedule_visit]\ndisclaimer: true\nreply: \"{answer}\"\n---\nYou quote prices.\n";

    #[test]
    fn a_well_formed_file_parses() {
        let spec = parse_agent("pricing", GOOD).unwrap();
        assert_eq!(spec.intents, ["pricing"]);
        assert_eq!(spec.handoff_threshold, 0.6);
        assert!(spec.disclaimer);
        assert_eq!(spec.system_prompt, "You quote prices.");
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        for (text, expected) in [
            ("intents: [x]\n", "must start with `---`"),
            ("---\nintents: [x]\n", "not closed"),
            ("---\nintents: []\n---\nPrompt", "at least one intent"),
            (
                "---\nintents: [x]\nhandoff_threshold: 3\n---\nPrompt",
                "between 0 and 1",
            ),
            (
                "---\nintents: [x]\ntools: [launch_rockets]\n---\nPrompt",
                "unknown tool",
            ),
            (
                "---\nintents: [x]\ncolour: blue\n---\nPrompt",
                "front matter",
            ),
            ("---\nintents: [x]\n---\n", "system prompt"),
            ("---\nintents: [x]\nreply: hi\n---\nPrompt", "{answer}"),
        ] {
            let err = parse_agent("x", text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_shipped_agents_load_and_cover_the_demo_intents() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/agents");
        let registry = AgentRegistry::load(&dir).unwrap();
        assert_eq!(registry.len(), 4);
        for (intent, agent) in [
            ("pricing", "pricing"),
            ("product_info", "property"),
            ("scheduling", "scheduling"),
            ("support", "support"),
        ] {
            assert_eq!(registry.for_intent(intent).unwrap().name, agent);
        }
    }

    #[test]
    fn two_agents_cannot_serve_one_intent() {
        let mut registry = AgentRegistry::default();
        registry.add(parse_agent("a", GOOD).unwrap()).unwrap();
        let err = registry.add(parse_agent("b", GOOD).unwrap()).unwrap_err();
        assert!(err.contains("already served by agent `a`"));
    }
}
