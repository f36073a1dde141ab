//! What a user asks for: classes of one or more phrases, a prompt template, and the limits on both.

use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};
use crate::vocab::Fnv64;

/// One class: shown as its first phrase; its embedding comes from its phrases by the
/// vocabulary's [`Synonyms`] rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ClassSpec {
    One(String),
    Synonyms(Vec<String>),
}

impl ClassSpec {
    pub fn phrases(&self) -> &[String] {
        match self {
            ClassSpec::One(p) => std::slice::from_ref(p),
            ClassSpec::Synonyms(v) => v,
        }
    }

    /// The label reported for detections of this class.
    pub fn label(&self) -> &str {
        self.phrases().first().map_or("", String::as_str)
    }
}

/// Classes as a request gives them: `"dog, puppy|pup"` or `["dog", ["puppy", "pup"]]`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Classes {
    Text(String),
    List(Vec<ClassSpec>),
}

impl std::str::FromStr for Classes {
    type Err = std::convert::Infallible;

    /// `"dog, puppy|pup"`, as a flag or a form field gives it.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Classes::Text(s.to_string()))
    }
}

impl Classes {
    /// The spec these classes make, with `template` (else the default one).
    pub fn spec(&self, template: Option<&str>) -> VocabSpec {
        let mut spec = match self {
            Classes::Text(t) => VocabSpec::parse_list(t),
            Classes::List(l) => VocabSpec::new(l.clone()),
        };
        if let Some(t) = template {
            spec.template = t.to_string();
        }
        spec
    }
}

/// How a class's phrases (synonyms) make its embedding.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Synonyms {
    /// The re-normalised mean of every phrase's embedding.
    #[default]
    Mean,
    /// The first phrase only, as the official DOSOD / YOLO-World evaluation (`cls_caps[0]`).
    First,
}

impl TryFrom<String> for Synonyms {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for Synonyms {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Synonyms::Mean),
            "first" => Ok(Synonyms::First),
            _ => Err(format!("synonyms `{s}`: expected mean or first")),
        }
    }
}

/// A vocabulary request: `{"classes": ["dog", ["puppy", "pup"]], "template": "a photo of a {}"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VocabSpec {
    #[schema(min_items = 1)]
    pub classes: Vec<ClassSpec>,
    #[serde(default = "default_template")]
    pub template: String,
    /// How synonyms combine: `mean` (default) or `first` (the official protocol).
    #[serde(default, skip_serializing_if = "is_default")]
    pub synonyms: Synonyms,
    /// Allow classes with the same phrases (the official first-phrase LVIS list repeats five
    /// names); repeated labels are told apart as `bow`, `bow (2)`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub allow_repeats: bool,
}

/// Characters that show nothing: white space, zero-width characters and bidi controls.
fn invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{00AD}'
        )
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

pub fn default_template() -> String {
    "{}".to_string()
}

section! {
    /// `[vocabulary.limits]`: bounds on a vocabulary.
    #[derive(Copy)]
    pub struct VocabLimits, flags VocabLimitsArgs (global = true) {
        /// Most classes per vocabulary.
        max_classes: usize = 2000 => "max-classes", "DOSOD_MAX_CLASSES";
        /// Most phrases (synonyms) per class.
        max_phrases_per_class: usize = 32 => "max-phrases-per-class", "DOSOD_MAX_PHRASES_PER_CLASS";
        /// Characters per phrase (after trimming, before the template).
        max_phrase_chars: usize = 200 => "max-phrase-chars", "DOSOD_MAX_PHRASE_CHARS";
        /// Tokens per templated phrase, special tokens included (also capped by the encoder).
        max_phrase_tokens: usize = 64 => "max-phrase-tokens", "DOSOD_MAX_PHRASE_TOKENS";
        /// Characters of the prompt template.
        max_template_chars: usize = 200 => "max-template-chars", "DOSOD_MAX_TEMPLATE_CHARS";
    }
}

impl VocabSpec {
    /// These classes with the default template and rules.
    pub fn new(classes: Vec<ClassSpec>) -> VocabSpec {
        VocabSpec {
            classes,
            template: default_template(),
            synonyms: Synonyms::Mean,
            allow_repeats: false,
        }
    }

    /// Parses the CLI / form syntax: classes separated by `,`, synonyms by `|`.
    /// `"dog, puppy|pup, red car"` is three classes, the second with two phrases.
    pub fn parse_list(text: &str) -> VocabSpec {
        let classes = text
            .split(',')
            .map(|class| {
                let phrases: Vec<String> = class.split('|').map(|p| p.trim().to_string()).collect();
                if phrases.len() == 1 {
                    ClassSpec::One(phrases.into_iter().next().unwrap_or_default())
                } else {
                    ClassSpec::Synonyms(phrases)
                }
            })
            .collect();
        VocabSpec::new(classes)
    }

    /// LVIS-style JSON: `[["aerosol can", "spray can"], ["air conditioner"], ...]`.
    pub fn from_phrase_lists(lists: Vec<Vec<String>>) -> VocabSpec {
        VocabSpec::new(lists.into_iter().map(ClassSpec::Synonyms).collect())
    }

    /// The label of each class: its first phrase; a label already used by an earlier class
    /// gets the first free occurrence number (`bow`, `bow (2)`; past a class literally named
    /// `bow (2)`, `bow (3)`), so every label names one class.
    pub fn labels(&self) -> Vec<String> {
        let firsts: std::collections::HashSet<&str> =
            self.classes.iter().map(ClassSpec::label).collect();
        let mut used: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut next: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        self.classes
            .iter()
            .map(|c| {
                let base = c.label();
                let label = if used.contains(base) {
                    let n = next.entry(base).or_insert(2);
                    loop {
                        let candidate = format!("{base} ({n})");
                        *n += 1;
                        if !used.contains(&candidate) && !firsts.contains(candidate.as_str()) {
                            break candidate;
                        }
                    }
                } else {
                    base.to_string()
                };
                used.insert(label.clone());
                label
            })
            .collect()
    }

    /// The phrases that make class `c`'s embedding under this vocabulary's rule.
    pub fn embedded_phrases<'a>(&self, c: &'a ClassSpec) -> &'a [String] {
        match self.synonyms {
            Synonyms::Mean => c.phrases(),
            Synonyms::First => &c.phrases()[..c.phrases().len().min(1)],
        }
    }

    /// Checks sizes, blanks and duplicates, naming the offending entry. Token counts are
    /// checked where the tokenizer is (`VocabStore::build`).
    pub fn validate(&self, limits: &VocabLimits) -> Result<()> {
        let bad = |m: String| Err(EngineError::Vocabulary(m));
        if self.classes.is_empty() {
            return bad("the vocabulary is empty".into());
        }
        if self.classes.len() > limits.max_classes {
            return bad(format!(
                "{} classes exceed the limit of {}",
                self.classes.len(),
                limits.max_classes
            ));
        }
        if self.template.chars().count() > limits.max_template_chars {
            return bad(format!(
                "template is longer than {} characters",
                limits.max_template_chars
            ));
        }
        if self.template.matches("{}").count() != 1 {
            return bad(format!(
                "template `{}` must contain `{{}}` exactly once",
                self.template
            ));
        }
        // Two classes may share a label (LVIS has two "bow"s, told apart by their synonyms),
        // but not the same phrase list.
        let mut lists: std::collections::HashMap<&[String], usize> =
            std::collections::HashMap::new();
        for (i, class) in self.classes.iter().enumerate() {
            let phrases = class.phrases();
            if phrases.is_empty() {
                return bad(format!("class {i} has no phrases"));
            }
            if phrases.len() > limits.max_phrases_per_class {
                return bad(format!(
                    "class {i} (`{}`) has {} phrases; the limit is {}",
                    class.label(),
                    phrases.len(),
                    limits.max_phrases_per_class
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for p in phrases {
                if p.trim().is_empty() {
                    return bad(format!("class {i} has a blank phrase"));
                }
                if p.trim() != p {
                    return bad(format!(
                        "phrase `{p}` of class {i} has surrounding whitespace"
                    ));
                }
                if p.chars().all(invisible) {
                    return bad(format!(
                        "phrase {p:?} of class {i} has no visible character"
                    ));
                }
                if p.chars().any(char::is_control) {
                    return bad(format!("phrase {p:?} of class {i} has a control character"));
                }
                let n = p.chars().count();
                if n > limits.max_phrase_chars {
                    return bad(format!(
                        "phrase `{}…` of class {i} has {n} characters; the limit is {}",
                        p.chars().take(24).collect::<String>(),
                        limits.max_phrase_chars
                    ));
                }
                if !seen.insert(p) {
                    return bad(format!("phrase `{p}` appears twice in class {i}"));
                }
            }
            if let Some(first) = lists.insert(phrases, i)
                && !self.allow_repeats
            {
                return bad(format!(
                    "class {i} (`{}`) duplicates class {first}",
                    class.label()
                ));
            }
        }
        Ok(())
    }

    /// The templated phrase for each (class, embedded phrase) pair, in order.
    pub fn prompts(&self) -> Vec<(usize, String)> {
        self.classes
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                self.embedded_phrases(c)
                    .iter()
                    .map(move |p| (i, self.template.replacen("{}", p, 1)))
            })
            .collect()
    }

    /// A stable hash of the ordered phrase lists and template, scoped to a model.
    pub fn hash(&self, scope: &str) -> String {
        let mut h = Fnv64::new();
        h.write(scope.as_bytes());
        h.write(&[0]);
        h.write(self.template.as_bytes());
        if self.synonyms == Synonyms::First {
            h.write(b"\0first");
        }
        for c in &self.classes {
            h.write(&[0x1e]);
            for p in c.phrases() {
                h.write(&[0x1f]);
                h.write(p.as_bytes());
            }
        }
        h.hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_names_one_class() {
        // Found by reading the fuzz targets: a class literally named `bow (2)` next to two
        // `bow`s gave the label `bow (2)` twice.
        let one = |p: &str| ClassSpec::One(p.into());
        let mut spec = VocabSpec::new(vec![one("bow"), one("bow (2)"), one("bow")]);
        spec.allow_repeats = true;
        assert_eq!(spec.labels(), ["bow", "bow (2)", "bow (3)"]);
        let mut spec = VocabSpec::new(vec![one("bow"), one("bow"), one("bow (2)")]);
        spec.allow_repeats = true;
        assert_eq!(spec.labels(), ["bow", "bow (3)", "bow (2)"]);
    }

    #[test]
    fn parses_synonyms_and_classes() {
        let s = VocabSpec::parse_list("dog, puppy|pup, red car");
        assert_eq!(s.labels(), vec!["dog", "puppy", "red car"]);
        assert_eq!(s.classes[1].phrases(), ["puppy", "pup"]);
        assert!(s.validate(&VocabLimits::default()).is_ok());
        assert_eq!(
            s.prompts().iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 1, 1, 2]
        );
    }

    #[test]
    fn json_forms() {
        let s: VocabSpec =
            serde_json::from_str(r#"{"classes": ["dog", ["puppy", "pup"]], "template": "a {}"}"#)
                .unwrap();
        assert_eq!(s.prompts()[2].1, "a pup");
        let s: VocabSpec = serde_json::from_str(r#"{"classes": ["x"]}"#).unwrap();
        assert_eq!(s.template, "{}");
        assert!(serde_json::from_str::<VocabSpec>(r#"{"classes": [1]}"#).is_err());
    }

    #[test]
    fn rejects_bad_entries_naming_them() {
        let l = VocabLimits::default();
        let err = |t: &str| {
            VocabSpec::parse_list(t)
                .validate(&l)
                .unwrap_err()
                .to_string()
        };
        assert!(err("dog, , cat").contains("class 1 has a blank phrase"));
        assert!(err("dog, cat, dog").contains("class 2 (`dog`) duplicates class 0"));
        // same label, other synonyms: allowed (LVIS has two "bow"s)
        assert!(
            VocabSpec::parse_list("bow|bow weapon, bow|bow ribbon")
                .validate(&l)
                .is_ok()
        );
        assert!(err("dog, pup|pup").contains("appears twice in class 1"));
        let long = "x".repeat(201);
        assert!(err(&long).contains("201 characters"));
        let many = (0..2001)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(err(&many).contains("2001 classes exceed the limit of 2000"));
        let mut s = VocabSpec::parse_list("dog");
        s.template = "a photo".into();
        assert!(
            s.validate(&l)
                .unwrap_err()
                .to_string()
                .contains("exactly once")
        );
        for ghost in ["\u{200B}\u{200D}", "\u{202E}\u{2066}", "\u{FEFF}"] {
            let e = VocabSpec::parse_list(&format!("dog, {ghost}"))
                .validate(&l)
                .unwrap_err()
                .to_string();
            assert!(e.contains("no visible character"), "{e}");
        }
        // Invisible characters inside a visible phrase are the user's business.
        assert!(
            VocabSpec::parse_list("dog\u{200D}face")
                .validate(&l)
                .is_ok()
        );
        let empty = VocabSpec::new(vec![]);
        assert!(
            empty
                .validate(&l)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }

    #[test]
    fn hash_depends_on_order_template_and_scope() {
        let a = VocabSpec::parse_list("dog, cat");
        let b = VocabSpec::parse_list("cat, dog");
        assert_ne!(a.hash("m"), b.hash("m"));
        assert_ne!(a.hash("m"), a.hash("n"));
        let mut c = a.clone();
        c.template = "a {}".into();
        assert_ne!(a.hash("m"), c.hash("m"));
        assert_eq!(a.hash("m"), VocabSpec::parse_list("dog,cat").hash("m"));
        // synonyms are not the same as separate classes
        assert_ne!(
            VocabSpec::parse_list("dog|cat").hash("m"),
            VocabSpec::parse_list("dog,cat").hash("m")
        );
    }
}
