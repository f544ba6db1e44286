//! Scenario outcomes and the tables of figures.

use std::fmt::Write as _;
use std::time::Duration;

use crate::Profile;

/// What one scenario found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub number: u8,
    pub name: &'static str,
    pub passed: bool,
    /// Figures, in order: (name, value).
    pub figures: Vec<(String, String)>,
    /// Why it failed (empty when it passed).
    pub problems: Vec<String>,
    pub seconds: f64,
}

impl Outcome {
    pub fn new(number: u8, name: &'static str) -> Outcome {
        Outcome {
            number,
            name,
            passed: true,
            figures: Vec::new(),
            problems: Vec::new(),
            seconds: 0.0,
        }
    }

    pub fn figure(&mut self, name: &str, value: impl ToString) {
        self.figures.push((name.to_owned(), value.to_string()));
    }

    /// Records a check; a false one fails the scenario with `problem`.
    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) -> bool {
        if !ok {
            self.passed = false;
            self.problems.push(problem());
        }
        ok
    }

    /// Records an error that ended the scenario early.
    pub fn error(&mut self, err: &anyhow::Error) {
        self.passed = false;
        self.problems.push(format!("{err:#}"));
    }

    fn figures_line(&self) -> String {
        self.figures
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The table printed at the end of a run.
pub fn text_table(outcomes: &[Outcome]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<3} {:<26} {:<6} {:>6}  figures",
        "#", "scenario", "result", "secs"
    );
    for outcome in outcomes {
        let _ = writeln!(
            text,
            "{:<3} {:<26} {:<6} {:>6.1}  {}",
            outcome.number,
            outcome.name,
            if outcome.passed { "pass" } else { "FAIL" },
            outcome.seconds,
            outcome.figures_line()
        );
        for problem in &outcome.problems {
            let _ = writeln!(text, "      problem: {problem}");
        }
    }
    text
}

/// The same table in Markdown, for docs/reliability.md.
pub fn markdown_table(outcomes: &[Outcome], profile: &Profile, total: Duration) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Run: `scripts/chaos{}` ({} profile), {:.0} s in all.\n",
        if profile.name == "bounded" {
            " --bounded"
        } else {
            ""
        },
        profile.name,
        total.as_secs_f64()
    );
    let _ = writeln!(text, "| # | scenario | result | seconds | figures |");
    let _ = writeln!(text, "|---|---|---|---|---|");
    for outcome in outcomes {
        let mut figures = outcome.figures_line();
        for problem in &outcome.problems {
            let _ = write!(figures, "; problem: {problem}");
        }
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.1} | {} |",
            outcome.number,
            outcome.name,
            if outcome.passed { "pass" } else { "FAIL" },
            outcome.seconds,
            figures.replace('|', "\\|").replace('\n', " ")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_fails_the_outcome_and_says_why() {
        let mut outcome = Outcome::new(5, "two operators");
        assert!(outcome.check(true, || "unused".into()));
        assert!(outcome.passed);
        assert!(!outcome.check(false, || "both proceeded".into()));
        assert!(!outcome.passed);
        outcome.figure("exit codes", "0,0");
        let table = text_table(&[outcome]);
        assert!(table.contains("FAIL"), "{table}");
        assert!(table.contains("problem: both proceeded"), "{table}");
        assert!(table.contains("exit codes 0,0"), "{table}");
    }

    #[test]
    fn markdown_cells_escape_pipes() {
        let mut outcome = Outcome::new(1, "cutover under load");
        outcome.figure("note", "a|b");
        let table = markdown_table(&[outcome], &Profile::FULL, Duration::from_secs(3));
        assert!(table.contains("a\\|b"), "{table}");
        assert!(table.contains("`scripts/chaos` (full profile)"), "{table}");
    }
}
