//! The rule of a join: a window join when both inputs' window bounds are
//! equated ([`super::window_join`]), else a regular join, both inputs
//! hash-exchanged on their keys into one two-port operator.

use super::*;
use crate::ops::join::JoinKind;
use crate::ops::window_join::WindowJoinKind;
use datafusion::logical_expr::JoinType;

/// What kind of join `join` is, or why Sluice cannot run it whatever its
/// inputs are.
pub(super) fn check(join: &logical::Join) -> std::result::Result<WindowJoinKind, String> {
    let kind = match join.join_type {
        JoinType::Inner => WindowJoinKind::Join(JoinKind::Inner),
        JoinType::Left => WindowJoinKind::Join(JoinKind::Left),
        JoinType::Right => WindowJoinKind::Join(JoinKind::Right),
        JoinType::Full => WindowJoinKind::Join(JoinKind::Full),
        JoinType::LeftSemi => WindowJoinKind::Semi(0),
        JoinType::RightSemi => WindowJoinKind::Semi(1),
        JoinType::LeftAnti => WindowJoinKind::Anti(0),
        JoinType::RightAnti => WindowJoinKind::Anti(1),
        // A subquery inside another condition (`x > 0 OR k IN (...)`).
        JoinType::LeftMark | JoinType::RightMark => {
            return Err(
                "a subquery inside another condition (IN or EXISTS under OR or NOT) is not supported yet; write a JOIN".into(),
            );
        }
    };
    if join.null_aware {
        return Err(
            "NOT IN over a subquery whose column may be NULL is not supported: write NOT EXISTS, or declare the column NOT NULL".into(),
        );
    }
    if join.on.is_empty() && !matches!(kind, WindowJoinKind::Join(_)) {
        return Err(
            "an IN or EXISTS subquery needs an equality with the outer query (`WHERE outer.k = inner.k`): one on a condition alone would compare every row with every other".into(),
        );
    }
    if join.on.is_empty() {
        return Err(
            "a JOIN needs an equality between its two sides (`ON a.k = b.k`): a join on a condition alone would compare every row with every other".into(),
        );
    }
    Ok(kind)
}

impl Translator<'_> {
    /// A join of `inputs` (left port 0, right port 1).
    pub(super) fn join(&mut self, join: &logical::Join, inputs: [Input; 2]) -> Result<Planned> {
        let window_kind = check(join).map_err(|message| self.error(message))?;
        let [left, right] = inputs;
        let input_updates = [
            left.properties.changelog.updates(),
            right.properties.changelog.updates(),
        ];
        let left = self.materialize(left.planned)?;
        let right = self.materialize(right.planned)?;
        let mut left_keys = Vec::with_capacity(join.on.len());
        let mut right_keys = Vec::with_capacity(join.on.len());
        for (l, r) in &join.on {
            let l = self.physical(l, &left.schema)?;
            let r = self.physical(r, &right.schema)?;
            let (lt, rt) = (
                l.data_type(left.schema.inner()),
                r.data_type(right.schema.inner()),
            );
            match (lt, rt) {
                (Ok(lt), Ok(rt)) if lt == rt => {}
                (Ok(lt), Ok(rt)) => {
                    return Err(self.error(format!(
                        "the JOIN keys `{}` and `{}` are {lt} and {rt}: cast one to the other's type",
                        crate::plan::sql_text::expr(l.as_ref()),
                        crate::plan::sql_text::expr(r.as_ref())
                    )));
                }
                (Err(e), _) | (_, Err(e)) => {
                    return Err(self.error(crate::sql::df_message(&e)));
                }
            }
            left_keys.push(l);
            right_keys.push(r);
        }
        // The condition reads both sides, whatever the join sends.
        let pairs = left
            .schema
            .join(&right.schema)
            .map_err(|e| self.error(crate::sql::df_message(&e)))?;
        let filter = join
            .filter
            .as_ref()
            .map(|f| self.physical(f, &pairs))
            .transpose()?;
        if input_updates == [false, false]
            && let Some(planned) = self.window_join(
                join,
                window_kind,
                [&left, &right],
                [&left_keys, &right_keys],
                &filter,
            )?
        {
            return Ok(planned);
        }
        // A regular join has no late rows: it reads no carried row.
        let left = self.without_carried_row(left);
        let right = self.without_carried_row(right);
        let WindowJoinKind::Join(kind) = window_kind else {
            let (side, what) = match window_kind {
                WindowJoinKind::Semi(0) => ("LEFT", "SEMI"),
                WindowJoinKind::Semi(_) => ("RIGHT", "SEMI"),
                WindowJoinKind::Anti(0) => ("LEFT", "ANTI"),
                _ => ("RIGHT", "ANTI"),
            };
            return Err(self.error(format!(
                "a {side} {what} JOIN (from IN, EXISTS or their negations) is supported between windows only (a window join on both sides' window_start and window_end); write an INNER or OUTER JOIN"
            )));
        };
        // Batch mode pads an outer join's rows once the other input ended,
        // so that its result is final; stream mode pads them at once.
        let pad_at_end = self.context.mode == crate::sql::Mode::Batch;
        let updates = crate::ops::join::RegularJoin::updates(kind, input_updates, pad_at_end);
        let schema = Arc::clone(join.schema.inner());
        let op = crate::ops::join::RegularJoin {
            kind,
            left_keys: left_keys.clone(),
            right_keys: right_keys.clone(),
            filter,
            nulls_equal: join.null_equality == datafusion::common::NullEquality::NullEqualsNull,
            left_schema: Arc::clone(left.schema.inner()),
            right_schema: Arc::clone(right.schema.inner()),
            schema: Arc::clone(&schema),
            input_updates,
            pad_at_end,
            ttl: self.state_ttl.filter(|_| !pad_at_end),
        };
        let schema = match updates {
            true => crate::changelog::with_row_kind(&schema),
            false => schema,
        };
        let id = self.add_node(NodeKind::Operator(Arc::new(op)), self.parallelism, schema);
        self.connect(left.node, id, Partitioning::Hash(left_keys));
        self.connect(right.node, id, Partitioning::Hash(right_keys));
        Ok(Planned::Stream(Stream {
            node: id,
            schema: Arc::clone(&join.schema),
        }))
    }
}
