use super::*;
use crate::ast::*;

fn parse_ok(text: &str) -> File {
    parse(FileId(0), text).unwrap_or_else(|d| panic!("{d:#?}"))
}

fn first_error(text: &str) -> Diagnostic {
    parse(FileId(0), text).expect_err("should fail").remove(0)
}

fn where_expr(text: &str) -> Expr {
    let file = parse_ok(&format!("version 1\nmetric m from s where {text}"));
    let Item::Metric(m) = &file.items[0] else { panic!() };
    let Clause::Where(e) = &m.clauses[0].node else { panic!() };
    e.clone()
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90s"), Some(90_000));
    assert_eq!(parse_duration("1h30m"), Some(5_400_000));
    assert_eq!(parse_duration("250ms"), Some(250));
    assert_eq!(parse_duration("2y"), Some(2 * 365 * 86_400_000));
    assert_eq!(parse_duration("99999999999999999999d"), None);
    assert_eq!(parse_duration("1001y"), None);
    assert_eq!(parse_duration("5"), None);
}

#[test]
fn precedence() {
    let e = where_expr("a or b and not c == 1 + 2 * -3");
    let ExprKind::Binary(BinaryOp::Or, _, rhs) = &e.node else { panic!("{e:?}") };
    let ExprKind::Binary(BinaryOp::And, _, rhs) = &rhs.node else { panic!() };
    let ExprKind::Unary(UnaryOp::Not, inner) = &rhs.node else { panic!() };
    let ExprKind::Binary(BinaryOp::Eq, _, rhs) = &inner.node else { panic!() };
    let ExprKind::Binary(BinaryOp::Add, _, rhs) = &rhs.node else { panic!() };
    let ExprKind::Binary(BinaryOp::Mul, _, rhs) = &rhs.node else { panic!() };
    assert!(matches!(rhs.node, ExprKind::Unary(UnaryOp::Neg, _)));
}

#[test]
fn postfix_forms() {
    let e = where_expr("lower(x).y ~ /a\\/b/i and z not in [1, 2] and w !~ /q/");
    let ExprKind::Binary(BinaryOp::And, lhs, rhs) = &e.node else { panic!() };
    assert!(matches!(&rhs.node, ExprKind::Match { is_negated: true, .. }));
    let ExprKind::Binary(BinaryOp::And, m, inn) = &lhs.node else { panic!() };
    let ExprKind::Match { expr, regex, .. } = &m.node else { panic!() };
    assert_eq!(regex.pattern, "a\\/b");
    assert_eq!(regex.to_regex_syntax(), "(?i)a/b");
    assert!(matches!(&expr.node, ExprKind::Member(..)));
    assert!(matches!(&inn.node, ExprKind::In { is_negated: true, .. }));
}

#[test]
fn keywords_stay_usable_as_field_names() {
    let e = where_expr("status == \"x\" and reason == window");
    assert!(matches!(e.node, ExprKind::Binary(BinaryOp::And, ..)));
}

#[test]
fn string_escapes() {
    let e = where_expr(r#"x == "a\"b\\c\n\u{e9}""#);
    let ExprKind::Binary(_, _, rhs) = &e.node else { panic!() };
    assert_eq!(rhs.node, ExprKind::Str("a\"b\\c\né".into()));
    let d = first_error("version 1\nmetric m from s where x == \"a\\qb\"");
    assert_eq!(d.code, Code::BadEscape);
}

#[test]
fn syntax_errors_name_what_was_expected() {
    let d = first_error("version 1\nmetric m from s window");
    assert_eq!(d.code, Code::Syntax);
    assert_eq!(d.message, "unexpected end of file");
    assert!(d.labels[0].message.contains("a duration such as `5m`"), "{:?}", d.labels);
}

#[test]
fn a_comma_after_the_last_item_of_a_list_gets_advice() {
    let head = "version 1\nmetric m from s\n";
    // The next clause's keyword read as an item, with a comment between.
    let d = first_error(&format!("{head}  group by a, b, # the b\n  compute count() as n\n"));
    assert_eq!(d.message, "unexpected `count`");
    let help = d.help.expect("help");
    assert!(help.starts_with("remove the comma before `compute`"), "{help}");
    assert!(help.ends_with("(after one, `compute` is read as one more item)"), "{help}");
    // A compute list before the next metric.
    let d = first_error(&format!("{head}  compute count() as n,\n\nmetric m2 from s\n"));
    assert!(d.help.expect("help").starts_with("remove the comma before `metric`"));
    // Where items cannot be names, the keyword itself is unexpected.
    let d = first_error(&format!("{head}  rollup 1h keep 90d, 1d keep 2y,\n  into table t\n"));
    assert!(d.help.expect("help").starts_with("remove the comma before `into`"));
    let d = first_error(&format!("{head}  group by a,\n"));
    assert!(d.help.expect("help").starts_with("remove the comma at the end of the file"));
    // Other syntax errors get none, a comma inside a string no more than any.
    assert_eq!(first_error(&format!("{head}  window 1m 2m\n")).help, None);
    let d = first_error(&format!("{head}  where x == \",#\" group\n  window\n"));
    assert_eq!(d.help.as_deref(), Some("write `group by`"));
    assert_eq!(first_error(&format!("{head}  group by a, compute\n  window\n")).help, None);
    // Non-ASCII text around the error is no word, and is sliced whole.
    for body in ["  where x ~ /é/ y", "  group by a, é", "  compute count() as n, éa", "  where \"é\" é"] {
        let _ = first_error(&format!("{head}{body}\n"));
    }
}

#[test]
fn common_mistakes_get_advice() {
    let help = |body: &str| first_error(&format!("version 1\nmetric m from s\n{body}\n")).help;
    let says = |body: &str, advice: &str| {
        let help = help(body).unwrap_or_default();
        assert!(help.contains(advice), "{body}: {help:?}");
    };
    says("  where event = \"bounced\"", "compare with `==`");
    says("  where diagnostic =~ /full/", "written `~`");
    says("  group sender_domain", "write `group by`");
    says("  compute count() n", "write `as n`");
    says("  group by sender_domain domain # a comment\n", "write `as domain`");
    says("  rollup 1h keep 90d 1d keep 2y", "separate the tiers with commas");
    let alert = |labels: &str| format!("  compute count() as n\nalert a on m when n > 1 labels {{ {labels} }}");
    says(&alert("severity: page"), "`\"page\"`");
    says(&alert("severity = \"page\""), "write `:`");
    // Words in strings and comments are no clause: this error is in `where`.
    assert_eq!(help("  where x == \"compute\" # group\n  y"), None);
    assert_eq!(help("  window 1m 2m"), None);
}

#[test]
fn deep_nesting_is_a_diagnostic() {
    let deep = format!("version 1\nmetric m from s where {}x{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(first_error(&deep).code, Code::TooDeep);
    let nots = format!("version 1\nmetric m from s where {}x", "not ".repeat(5000));
    assert_eq!(first_error(&nots).code, Code::TooDeep);
    let chain = format!("version 1\nmetric m from s where x{}", " + x".repeat(20000));
    assert_eq!(first_error(&chain).code, Code::TooDeep);
    let members = format!("version 1\nmetric m from s where x{}", ".y".repeat(20000));
    assert_eq!(first_error(&members).code, Code::TooDeep);
    let cases =
        format!("version 1\nmetric m from s where {} 1 {}", "case when x then ".repeat(500), "end ".repeat(500));
    assert_eq!(first_error(&cases).code, Code::TooDeep);
}

#[test]
fn regex_may_contain_brackets_and_hashes() {
    let e = where_expr("x ~ /((a)# [b/ and y");
    assert!(matches!(e.node, ExprKind::Binary(BinaryOp::And, ..)));
}
