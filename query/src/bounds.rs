//! What a scan's filters say about the rows wanted — a time range and a set of systems — so
//! the engine reads only the days, files and row groups that can hold them. The filters are
//! still applied to every row afterwards (the pushdown is inexact), so anything not
//! understood here only costs reading more.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use roaring::RoaringBitmap;
use sunfleet_engine::tables::{SYSTEM_ID, TIME};

/// The rows a scan may need: `[start_us, end_us)` and, when known, a set of systems.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanBounds {
    pub start_us: i64,
    pub end_us: i64,
    pub systems: Option<RoaringBitmap>,
}

impl Default for ScanBounds {
    fn default() -> Self {
        Self {
            start_us: i64::MIN,
            end_us: i64::MAX,
            systems: None,
        }
    }
}

impl ScanBounds {
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut bounds = ScanBounds::default();
        for filter in filters {
            for term in split_conjunction(filter) {
                bounds.narrow(term);
            }
        }
        bounds
    }

    fn narrow(&mut self, term: &Expr) {
        match term {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (column, op, value) = match (column_name(left), literal(right)) {
                    (Some(column), Some(value)) => (column, *op, value),
                    _ => match (column_name(right), literal(left), op.swap()) {
                        (Some(column), Some(value), Some(op)) => (column, op, value),
                        _ => return,
                    },
                };
                if column == TIME
                    && let Some(time) = micros(value)
                {
                    self.narrow_time(op, time);
                } else if column == SYSTEM_ID
                    && op == Operator::Eq
                    && let Some(system) = system(value)
                {
                    self.narrow_systems([system].into_iter().collect());
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if column_name(expr) == Some(TIME) => {
                if let Some(low) = literal(low).and_then(micros) {
                    self.narrow_time(Operator::GtEq, low);
                }
                if let Some(high) = literal(high).and_then(micros) {
                    self.narrow_time(Operator::LtEq, high);
                }
            }
            Expr::InList(list) if !list.negated && column_name(&list.expr) == Some(SYSTEM_ID) => {
                let systems: Option<RoaringBitmap> = list
                    .list
                    .iter()
                    .map(|e| literal(e).and_then(system))
                    .collect();
                if let Some(systems) = systems {
                    self.narrow_systems(systems);
                }
            }
            _ => {}
        }
    }

    fn narrow_time(&mut self, op: Operator, time_us: i64) {
        // A literal finer than a microsecond was truncated: bounds stay inclusive of it.
        match op {
            Operator::Gt | Operator::GtEq => self.start_us = self.start_us.max(time_us),
            Operator::Lt | Operator::LtEq => {
                self.end_us = self.end_us.min(time_us.saturating_add(1))
            }
            Operator::Eq => {
                self.start_us = self.start_us.max(time_us);
                self.end_us = self.end_us.min(time_us.saturating_add(1));
            }
            _ => {}
        }
    }

    fn narrow_systems(&mut self, systems: RoaringBitmap) {
        self.systems = Some(match self.systems.take() {
            Some(known) => known & systems,
            None => systems,
        });
    }

    /// True when no row can match.
    pub fn is_empty(&self) -> bool {
        self.start_us >= self.end_us || self.systems.as_ref().is_some_and(|s| s.is_empty())
    }
}

/// The column an expression reads, through casts that keep every value distinct: integer
/// widenings of `system_id`, and timestamps at microsecond precision or finer. (A cast to
/// seconds would make `time = X` match a whole second, wider than the bounds taken here.)
fn column_name(expr: &Expr) -> Option<&str> {
    let (inner, to) = match expr {
        Expr::Column(column) => return Some(column.name.as_str()),
        Expr::Cast(cast) => (&cast.expr, cast.field.data_type()),
        Expr::TryCast(cast) => (&cast.expr, cast.field.data_type()),
        _ => return None,
    };
    let name = column_name(inner)?;
    let keeps_values = matches!(
        (name, to),
        (
            SYSTEM_ID,
            DataType::UInt32 | DataType::UInt64 | DataType::Int64
        ) | (
            TIME,
            DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _)
        )
    );
    keeps_values.then_some(name)
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

fn micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        _ => None,
    }
}

fn system(value: &ScalarValue) -> Option<u32> {
    match value {
        ScalarValue::UInt32(Some(v)) => Some(*v),
        ScalarValue::Int64(Some(v)) => u32::try_from(*v).ok(),
        ScalarValue::Int32(Some(v)) => u32::try_from(*v).ok(),
        ScalarValue::UInt64(Some(v)) => u32::try_from(*v).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn at(micros: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn time_comparisons_and_between_narrow_the_range() {
        let bounds = ScanBounds::from_filters(&[
            col("time").gt_eq(at(100)),
            col("time").lt(at(500)),
            at(450).gt(col("time")),
        ]);
        assert_eq!((bounds.start_us, bounds.end_us), (100, 451));
        let bounds = ScanBounds::from_filters(&[col("time").between(at(10), at(20))]);
        assert_eq!((bounds.start_us, bounds.end_us), (10, 21));
    }

    #[test]
    fn system_equality_and_lists_intersect() {
        let bounds = ScanBounds::from_filters(&[
            col("system_id").in_list(vec![lit(1u32), lit(2u32), lit(3u32)], false),
            col("system_id").eq(lit(2u32)).and(col("time").gt(at(5))),
        ]);
        assert_eq!(bounds.systems, Some([2].into_iter().collect()));
        assert_eq!(bounds.start_us, 5);
        let none = ScanBounds::from_filters(&[
            col("system_id").eq(lit(1u32)),
            col("system_id").eq(lit(2u32)),
        ]);
        assert!(none.is_empty());
    }

    #[test]
    fn only_casts_that_keep_values_apart_are_looked_through() {
        use datafusion::arrow::datatypes::{DataType, TimeUnit};
        use datafusion::logical_expr::cast;
        let wide = cast(col("system_id"), DataType::Int64).eq(lit(7i64));
        assert_eq!(
            ScanBounds::from_filters(&[wide]).systems,
            Some([7].into_iter().collect())
        );
        let seconds = cast(col("time"), DataType::Timestamp(TimeUnit::Second, None))
            .eq(lit(ScalarValue::TimestampSecond(Some(10), None)));
        assert_eq!(ScanBounds::from_filters(&[seconds]), ScanBounds::default());
        let narrow = cast(col("system_id"), DataType::Int8).eq(lit(7i8));
        assert_eq!(ScanBounds::from_filters(&[narrow]), ScanBounds::default());
    }

    #[test]
    fn what_is_not_understood_reads_everything() {
        let bounds = ScanBounds::from_filters(&[
            col("system_id").in_list(vec![lit(1u32)], true),
            col("time").gt(col("time")),
            col("system_id")
                .eq(lit(1u32))
                .or(col("system_id").eq(lit(2u32))),
            col("ac_power_w").gt(lit(5u16)),
        ]);
        assert_eq!(bounds, ScanBounds::default());
    }
}
