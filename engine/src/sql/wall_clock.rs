//! `NOW()`, `CURRENT_TIMESTAMP`, `CURRENT_DATE` and `CURRENT_TIME`: the wall
//! clock, read when the job runs, never frozen into its plan.
//!
//! DataFusion folds these functions into a constant while it optimizes a
//! query, from the time the query is planned. For Sluice that is wrong
//! twice over. A checkpoint records a fingerprint of the plan, and a plan
//! holding the moment it was made differs on every run, so a job using
//! `NOW()` could never be restored. And a stream job runs for months: a
//! `WHERE ts > NOW() - INTERVAL '1' HOUR` frozen at start-up would compare
//! against the same instant for ever.
//!
//! So these functions stay calls in the plan (the optimizer runs without
//! a query start time, see `sql::optimize`) and are evaluated as rows flow,
//! with Flink's semantics:
//! - **stream mode**: at each evaluation, i.e. per batch. Flink evaluates
//!   them per record; a batch's rows arrive together, so per batch is the
//!   same clock to within the time one batch takes.
//! - **batch mode**: once per run. The first evaluation fixes the instant
//!   and every later one, on every subtask, returns it, as Flink evaluates
//!   them once per query in batch. A run restored from a checkpoint is a new
//!   run and reads the clock again.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use chrono::{DateTime, Timelike, Utc};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::Mode;

/// The wall-clock functions of a job that runs in `mode`, sharing one clock
/// (in batch mode, one instant). `time_zone` is the session's, for the type
/// of `NOW()`, as DataFusion's own gives it.
pub fn wall_clock_functions(mode: Mode, time_zone: Option<&str>) -> Vec<Arc<ScalarUDF>> {
    let clock = Clock {
        mode,
        fixed: Arc::new(OnceLock::new()),
    };
    let time_zone: Option<Arc<str>> = time_zone.map(Arc::from);
    [Reading::Timestamp(time_zone), Reading::Date, Reading::Time]
        .into_iter()
        .map(|reading| {
            Arc::new(ScalarUDF::new_from_impl(WallClockFunc {
                // Volatile: the optimizer must neither fold nor deduplicate it.
                signature: Signature::nullary(Volatility::Volatile),
                aliases: reading.aliases(),
                reading,
                clock: clock.clone(),
            }))
        })
        .collect()
}

/// Where a job's wall-clock functions read the time.
#[derive(Debug, Clone)]
struct Clock {
    mode: Mode,
    /// In batch mode, the instant of the run's first reading.
    fixed: Arc<OnceLock<DateTime<Utc>>>,
}

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        match self.mode {
            Mode::Stream => Utc::now(),
            Mode::Batch => *self.fixed.get_or_init(Utc::now),
        }
    }
}

/// What a function reads off the clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Reading {
    /// `NOW()`, `CURRENT_TIMESTAMP`: a timestamp in the session's zone, to
    /// the millisecond.
    Timestamp(Option<Arc<str>>),
    /// `CURRENT_DATE`: the UTC date.
    Date,
    /// `CURRENT_TIME`: the UTC time of day.
    Time,
}

impl Reading {
    fn name(&self) -> &'static str {
        match self {
            Self::Timestamp(_) => "now",
            Self::Date => "current_date",
            Self::Time => "current_time",
        }
    }

    fn aliases(&self) -> Vec<String> {
        match self {
            Self::Timestamp(_) => vec!["current_timestamp".into()],
            Self::Date => vec!["today".into()],
            Self::Time => Vec::new(),
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            // Flink's precision (TIMESTAMP_LTZ(3)), which is also that of
            // rowtimes: comparing with one casts neither side.
            Self::Timestamp(zone) => DataType::Timestamp(TimeUnit::Millisecond, zone.clone()),
            Self::Date => DataType::Date32,
            Self::Time => DataType::Time64(TimeUnit::Nanosecond),
        }
    }

    fn value(&self, now: DateTime<Utc>) -> DfResult<ScalarValue> {
        Ok(match self {
            Self::Timestamp(zone) => {
                ScalarValue::TimestampMillisecond(Some(now.timestamp_millis()), zone.clone())
            }
            Self::Date => {
                let days = now.timestamp().div_euclid(86_400);
                let Ok(days) = i32::try_from(days) else {
                    return exec_err!("the wall clock ({now}) is beyond DATE");
                };
                ScalarValue::Date32(Some(days))
            }
            Self::Time => {
                let time = now.time();
                let nanos = i64::from(time.num_seconds_from_midnight()) * 1_000_000_000
                    + i64::from(time.nanosecond() % 1_000_000_000);
                ScalarValue::Time64Nanosecond(Some(nanos))
            }
        })
    }
}

#[derive(Debug)]
struct WallClockFunc {
    signature: Signature,
    aliases: Vec<String>,
    reading: Reading,
    clock: Clock,
}

// Two readings are the same function only on the same clock.
impl PartialEq for WallClockFunc {
    fn eq(&self, other: &Self) -> bool {
        self.reading == other.reading && Arc::ptr_eq(&self.clock.fixed, &other.clock.fixed)
    }
}

impl Eq for WallClockFunc {}

impl Hash for WallClockFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.reading.hash(state);
    }
}

impl ScalarUDFImpl for WallClockFunc {
    fn name(&self) -> &str {
        self.reading.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.reading.data_type())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(Field::new(
            self.name(),
            self.reading.data_type(),
            false,
        )))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.reading.value(self.clock.now())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    fn read(f: &ScalarUDF) -> ScalarValue {
        let args = ScalarFunctionArgs {
            args: Vec::new(),
            arg_fields: Vec::new(),
            number_rows: 1,
            return_field: Arc::new(Field::new(
                "t",
                f.inner().return_type(&[]).expect("type"),
                false,
            )),
            config_options: Arc::new(datafusion::config::ConfigOptions::default()),
        };
        match f.invoke_with_args(args).expect("evaluates") {
            ColumnarValue::Scalar(v) => v,
            ColumnarValue::Array(_) => panic!("a clock reading is one value"),
        }
    }

    fn now_of(functions: &[Arc<ScalarUDF>]) -> &ScalarUDF {
        functions.iter().find(|f| f.name() == "now").expect("now()")
    }

    /// A stream job reads the clock at each evaluation; a batch job reads
    /// it once and keeps that instant for the run.
    #[test]
    fn stream_reads_the_clock_each_time_batch_once_per_run() {
        let stream = wall_clock_functions(Mode::Stream, None);
        let first = read(now_of(&stream));
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(
            read(now_of(&stream)) > first,
            "a later batch sees a later time"
        );

        let batch = wall_clock_functions(Mode::Batch, None);
        let first = read(now_of(&batch));
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(read(now_of(&batch)), first);
        let ScalarValue::TimestampMillisecond(Some(at), None) = first else {
            panic!("now() is a timestamp: {first:?}");
        };
        let date = batch
            .iter()
            .find(|f| f.name() == "current_date")
            .expect("date");
        assert_eq!(
            read(date),
            ScalarValue::Date32(Some(at.div_euclid(86_400_000) as i32)),
            "the date of the same instant"
        );
        let time = batch
            .iter()
            .find(|f| f.name() == "current_time")
            .expect("time");
        let ScalarValue::Time64Nanosecond(Some(nanos)) = read(time) else {
            panic!("current_time() is a time of day");
        };
        assert_eq!(
            nanos / 1_000_000,
            at.rem_euclid(86_400_000),
            "the same instant"
        );
    }

    /// Volatile, so DataFusion's simplifier never folds it into the plan.
    #[test]
    fn the_functions_are_volatile() {
        for f in wall_clock_functions(Mode::Batch, None) {
            assert_eq!(
                f.signature().volatility,
                Volatility::Volatile,
                "{}",
                f.name()
            );
        }
    }
}
