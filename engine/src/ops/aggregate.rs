//! Grouped aggregation over Arrow arrays with DataFusion's accumulators.
//!
//! [`Groups`] is one hash table of group keys (DataFusion's `GroupValues`,
//! the same vectorised tables its hash aggregate uses) and one
//! `GroupsAccumulator` per aggregate. Window operators keep one `Groups` per
//! slice; a slice shared by several windows is turned into *state* (the
//! accumulators' partial results) and merged into each window that fires.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::error::{ExecContext, Result};
use crate::time::{Millis, WindowColumn};

/// What to group by and what to compute, over the operator's input schema.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub key_schema: SchemaRef,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// `FILTER (WHERE ...)` of each aggregate.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Which output column comes from where.
    pub output: Vec<OutputColumn>,
    pub output_schema: SchemaRef,
}

impl AggregateSpec {
    /// `keys [...] aggs [...]` as SQL, for `sluice explain`.
    pub fn describe(&self) -> String {
        use crate::plan::sql_text;
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| sql_text::expr(k.as_ref()))
            .collect();
        let aggs: Vec<String> = self
            .aggregates
            .iter()
            .zip(&self.filters)
            .map(|(a, f)| sql_text::aggregate(a, f.as_ref()))
            .collect();
        format!("keys [{}] aggs [{}]", keys.join(", "), aggs.join(", "))
    }
}

/// One column of an aggregation's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputColumn {
    Key(usize),
    Window(WindowColumn),
    Aggregate(usize),
}

/// The evaluated inputs of one batch: keys, aggregate arguments, filters.
pub struct Evaluated {
    pub keys: Vec<ArrayRef>,
    pub args: Vec<Vec<ArrayRef>>,
    pub filters: Vec<Option<BooleanArray>>,
    pub rows: usize,
}

impl Evaluated {
    /// The rows at `indices`.
    pub fn take(&self, indices: &arrow::array::UInt32Array) -> Result<Evaluated> {
        Ok(Evaluated {
            keys: take_all(&self.keys, indices)?,
            args: self
                .args
                .iter()
                .map(|args| take_all(args, indices))
                .collect::<Result<_>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| {
                            arrow::compute::take(f, indices, None)
                                .map(|a| a.as_boolean().clone())
                                .exec_context(|| "selecting filter rows".to_string())
                        })
                        .transpose()
                })
                .collect::<Result<_>>()?,
            rows: indices.len(),
        })
    }
}

/// The rows at `indices` of each array.
fn take_all(arrays: &[ArrayRef], indices: &arrow::array::UInt32Array) -> Result<Vec<ArrayRef>> {
    arrays
        .iter()
        .map(|a| {
            arrow::compute::take(a.as_ref(), indices, None)
                .exec_context(|| "selecting rows of a slice".to_string())
        })
        .collect()
}

impl AggregateSpec {
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<Evaluated> {
        let rows = batch.num_rows();
        let eval = |e: &Arc<dyn PhysicalExpr>| {
            e.evaluate(batch)
                .and_then(|v| v.into_array(rows))
                .exec_context(|| format!("evaluating {e}"))
        };
        let keys = self.keys.iter().map(eval).collect::<Result<_>>()?;
        let args = self
            .aggregates
            .iter()
            .map(|a| {
                // An aggregate with ORDER BY takes the ordering values after
                // its arguments, as in DataFusion's partial aggregation.
                let ordering = a.order_bys().iter().map(|o| &o.expr);
                a.expressions()
                    .iter()
                    .chain(ordering)
                    .map(eval)
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let filters = self
            .filters
            .iter()
            .map(|f| {
                f.as_ref()
                    .map(|f| eval(f).map(|a| a.as_boolean().clone()))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(Evaluated {
            keys,
            args,
            filters,
            rows,
        })
    }

    /// The results of an aggregation without keys over no rows at all:
    /// one row, as batch SQL has it (`COUNT(*)` is 0, `SUM(x)` is NULL).
    pub fn results_of_nothing(&self) -> Result<Results> {
        let values = self
            .aggregates
            .iter()
            .map(|a| {
                a.create_accumulator()
                    .and_then(|mut acc| acc.evaluate())
                    .and_then(|v| v.to_array())
                    .exec_context(|| format!("evaluating {} over no rows", a.name()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Results {
            keys: Vec::new(),
            values,
            rows: 1,
        })
    }

    /// The schema of the merged-state form of the aggregates, for [`Groups::merge`].
    pub fn state_fields(&self) -> Result<Vec<Vec<Arc<Field>>>> {
        self.aggregates
            .iter()
            .map(|a| {
                a.state_fields()
                    .exec_context(|| format!("state of {}", a.name()))
            })
            .collect()
    }

    /// Builds output rows from emitted keys and values and the window they
    /// belong to.
    pub fn output_batch(&self, results: Results, windows: Windows<'_>) -> Result<RecordBatch> {
        let Results { keys, values, rows } = results;
        let columns = self
            .output
            .iter()
            .zip(self.output_schema.fields())
            .map(|(c, field)| {
                let array = match *c {
                    OutputColumn::Key(i) => Arc::clone(&keys[i]),
                    OutputColumn::Aggregate(i) => Arc::clone(&values[i]),
                    OutputColumn::Window(w) => windows.column(w, rows),
                };
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    cast(&array, field.data_type())
                        .exec_context(|| format!("casting output column `{}`", field.name()))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new_with_options(
            Arc::clone(&self.output_schema),
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .exec_context(|| "assembling aggregate output".to_string())
    }
}

/// The windows of emitted rows.
#[derive(Debug, Clone, Copy)]
pub enum Windows<'a> {
    /// A global aggregate has none.
    None,
    /// Every row belongs to the window `[start, end)`.
    One(Millis, Millis),
    /// Row `i` belongs to `[starts[i], ends[i])` (session windows).
    PerRow(&'a TimestampMillisecondArray, &'a TimestampMillisecondArray),
}

impl Windows<'_> {
    fn column(self, column: WindowColumn, rows: usize) -> ArrayRef {
        match self {
            Self::None => Arc::new(TimestampMillisecondArray::new_null(rows)),
            Self::One(start, end) => Arc::new(TimestampMillisecondArray::from_value(
                column.value(start, end),
                rows,
            )),
            Self::PerRow(starts, ends) => match column {
                WindowColumn::Start => Arc::new(starts.clone()),
                WindowColumn::End => Arc::new(ends.clone()),
                WindowColumn::Time => Arc::new(arrow::compute::kernels::arity::unary::<
                    _,
                    _,
                    arrow::datatypes::TimestampMillisecondType,
                >(ends, |e| e - 1)),
            },
        }
    }
}

/// The key table of one group space.
enum Keys {
    /// No `GROUP BY` keys: every row is in group 0.
    None {
        seen: bool,
    },
    Values(Box<dyn GroupValues>),
}

/// One group space: keys and an accumulator per aggregate.
pub struct Groups {
    keys: Keys,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    group_ids: Vec<usize>,
}

impl Groups {
    /// Groups keyed by columns of `key_schema` (none: one group), computing `aggregates`.
    pub fn new(key_schema: &SchemaRef, aggregates: &[Arc<AggregateFunctionExpr>]) -> Result<Self> {
        let keys = if key_schema.fields().is_empty() {
            Keys::None { seen: false }
        } else {
            Keys::Values(
                new_group_values(Arc::clone(key_schema), &GroupOrdering::None)
                    .exec_context(|| "creating the group table".to_string())?,
            )
        };
        let accumulators = aggregates
            .iter()
            .map(|a| create_accumulator(a))
            .collect::<Result<_>>()?;
        Ok(Self {
            keys,
            accumulators,
            group_ids: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        match &self.keys {
            Keys::None { seen } => usize::from(*seen),
            Keys::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn intern(&mut self, keys: &[ArrayRef], rows: usize) -> Result<usize> {
        match &mut self.keys {
            Keys::None { seen } => {
                *seen = true;
                self.group_ids.clear();
                self.group_ids.resize(rows, 0);
            }
            Keys::Values(v) => v
                .intern(keys, &mut self.group_ids)
                .exec_context(|| "grouping rows".to_string())?,
        }
        Ok(self.len())
    }

    /// Adds rows.
    pub fn update(&mut self, input: &Evaluated) -> Result<()> {
        if input.rows == 0 {
            return Ok(());
        }
        let total = self.intern(&input.keys, input.rows)?;
        for ((acc, args), filter) in self
            .accumulators
            .iter_mut()
            .zip(&input.args)
            .zip(&input.filters)
        {
            acc.update_batch(args, &self.group_ids, filter.as_ref(), total)
                .exec_context(|| "updating an aggregate".to_string())?;
        }
        Ok(())
    }

    /// Adds partial results produced by [`Groups::take_state`].
    pub fn merge(&mut self, state: &GroupState) -> Result<()> {
        let rows = state.keys.first().map_or(state.rows, |k| k.len());
        if rows == 0 {
            return Ok(());
        }
        let total = self.intern(&state.keys, rows)?;
        for (acc, values) in self.accumulators.iter_mut().zip(&state.states) {
            acc.merge_batch(values, &self.group_ids, total)
                .exec_context(|| "merging partial aggregates".to_string())?;
        }
        Ok(())
    }

    fn emit_keys(&mut self) -> Result<Vec<ArrayRef>> {
        match &mut self.keys {
            Keys::None { seen } => {
                *seen = false;
                Ok(Vec::new())
            }
            Keys::Values(v) => v
                .emit(EmitTo::All)
                .exec_context(|| "emitting group keys".to_string()),
        }
    }

    /// Final values, emptying the groups.
    pub fn evaluate(&mut self) -> Result<Results> {
        let rows = self.len();
        let values = self
            .accumulators
            .iter_mut()
            .map(|a| {
                a.evaluate(EmitTo::All)
                    .exec_context(|| "evaluating an aggregate".to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Results {
            keys: self.emit_keys()?,
            values,
            rows,
        })
    }

    /// Partial results, emptying the groups.
    pub fn take_state(&mut self) -> Result<GroupState> {
        let rows = self.len();
        let states = self
            .accumulators
            .iter_mut()
            .map(|a| {
                a.state(EmitTo::All)
                    .exec_context(|| "taking an aggregate's state".to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GroupState {
            keys: self.emit_keys()?,
            states,
            rows,
        })
    }
}

fn create_accumulator(
    aggregate: &Arc<AggregateFunctionExpr>,
) -> Result<Box<dyn GroupsAccumulator>> {
    if aggregate.groups_accumulator_supported() {
        return aggregate
            .create_groups_accumulator()
            .exec_context(|| format!("creating accumulator for {}", aggregate.name()));
    }
    let aggregate = Arc::clone(aggregate);
    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
        aggregate.create_accumulator()
    })))
}

/// The final results of a group space: keys and each aggregate's values.
#[derive(Debug, Clone)]
pub struct Results {
    pub keys: Vec<ArrayRef>,
    pub values: Vec<ArrayRef>,
    /// Rows (groups), also when there are no key or value columns.
    pub rows: usize,
}

/// The partial results of a group space: keys and each aggregate's state columns.
#[derive(Debug, Clone)]
pub struct GroupState {
    pub keys: Vec<ArrayRef>,
    pub states: Vec<Vec<ArrayRef>>,
    /// Rows (groups), also when there are no key columns.
    pub rows: usize,
}

impl GroupState {
    /// The groups at `indices`.
    pub fn take(&self, indices: &arrow::array::UInt32Array) -> Result<GroupState> {
        Ok(GroupState {
            keys: take_all(&self.keys, indices)?,
            states: self
                .states
                .iter()
                .map(|s| take_all(s, indices))
                .collect::<Result<_>>()?,
            rows: indices.len(),
        })
    }
}

/// Event times of `column` as milliseconds, whatever its timestamp unit.
pub fn event_times(column: &ArrayRef) -> Result<TimestampMillisecondArray> {
    let target = DataType::Timestamp(TimeUnit::Millisecond, None);
    let array = match column.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, None) => Arc::clone(column),
        _ => cast(column, &target).exec_context(|| "reading event times".to_string())?,
    };
    Ok(array
        .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
        .clone())
}

/// A schema for the key columns of `keys` evaluated over `input`, named `names`.
pub fn key_schema(
    keys: &[Arc<dyn PhysicalExpr>],
    names: &[String],
    input: &Schema,
) -> Result<SchemaRef> {
    let fields = keys
        .iter()
        .zip(names)
        .map(|(k, name)| {
            Ok(Field::new(
                name,
                k.data_type(input).exec_context(|| format!("type of {k}"))?,
                true,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}
