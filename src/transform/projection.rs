//! Which fields of `users_raw` the SQL reads, so the decoder fills only
//! those columns (issue 19: the built-in SQL reads 16 of the 38 leaves). Found
//! in the plan as DataFusion's SQL planner made it, before any optimization:
//! every expression of every node, subqueries included. A field reached only
//! through `col['a']['b']` needs only that part; a column named anywhere else
//! (bare, in `*`, in the output, under a node whose expressions are not
//! visible) needs all of it. Unread leaves come out null; every record is
//! still read and checked whole, so what goes to the DLQ and why is the same.

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};

/// The dotted paths the SQL reads (`login.uuid`, or `login` for all of it),
/// or `None`: everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads(Option<Vec<String>>);

impl Reads {
    pub const ALL: Reads = Reads(None);

    /// What `plan` reads of a table whose top-level columns are `columns`.
    pub fn of(plan: &LogicalPlan, columns: &[&str]) -> Self {
        let mut paths: Vec<Vec<String>> = Vec::new();
        let mut all = false;
        let walked = plan.apply_with_subqueries(|node| {
            if matches!(node, LogicalPlan::Extension(_) | LogicalPlan::RecursiveQuery(_) | LogicalPlan::Dml(_)) {
                all = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            node.apply_expressions(|e| {
                e.apply(|x| {
                    // DataFusion's planner expands `*` itself; should one be left, it reads everything.
                    #[allow(deprecated)]
                    if matches!(x, Expr::Wildcard { .. }) {
                        all = true;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Ok(match path(x) {
                        Some(p) => {
                            paths.push(p);
                            TreeNodeRecursion::Jump
                        }
                        None => TreeNodeRecursion::Continue,
                    })
                })
            })
        });
        if all || walked.is_err() {
            return Reads::ALL;
        }
        // A plan that does not end in a projection may output raw columns as
        // they are: what it outputs by a raw column's name is read whole.
        if !projects(plan) {
            paths.extend(plan.schema().fields().iter().map(|f| vec![f.name().clone()]));
        }
        let mut read: Vec<String> =
            paths.into_iter().filter(|p| columns.contains(&p[0].as_str())).map(|p| p.join(".")).collect();
        read.sort();
        read.dedup();
        Reads(Some(read))
    }

    /// Whether the leaf at dotted `path` is read.
    pub fn leaf(&self, path: &str) -> bool {
        match &self.0 {
            None => true,
            Some(read) => read.iter().any(|r| {
                path == r
                    || path.strip_prefix(r.as_str()).is_some_and(|rest| rest.starts_with('.'))
                    || r.strip_prefix(path).is_some_and(|rest| rest.starts_with('.'))
            }),
        }
    }
}

/// Whether what `plan` outputs is made by a projection or an aggregate
/// (whose expressions name what they read) under nodes that only pass rows on.
fn projects(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Distinct(Distinct::All(_))
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_) => plan.inputs().first().is_some_and(|input| projects(input)),
        _ => false,
    }
}

/// `column` or `column['a']['b']` (literal keys): the path it names.
fn path(e: &Expr) -> Option<Vec<String>> {
    match e {
        // A subquery names a column of the query around it as an outer reference.
        Expr::Column(c) | Expr::OuterReferenceColumn(_, c) => Some(vec![c.name.clone()]),
        Expr::ScalarFunction(f) if f.func.name() == "get_field" => {
            let (base, keys) = f.args.split_first()?;
            let mut p = path(base)?;
            for k in keys {
                match k {
                    Expr::Literal(
                        ScalarValue::Utf8(Some(k)) | ScalarValue::Utf8View(Some(k)) | ScalarValue::LargeUtf8(Some(k)),
                        _,
                    ) => p.push(k.clone()),
                    _ => return None,
                }
            }
            Some(p)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::decode::{Decoded, RawDecoder, raw_schema};
    use crate::transform::sql::{DEFAULT_SQL, Query};

    async fn reads(sql: &str) -> Reads {
        Query::plan(sql, raw_schema()).await.unwrap().reads().clone()
    }

    fn paths(r: &Reads) -> Vec<&str> {
        r.0.as_ref().expect("some paths").iter().map(String::as_str).collect()
    }

    #[tokio::test]
    async fn the_built_in_sql_reads_its_sixteen_leaves() {
        let r = reads(DEFAULT_SQL).await;
        assert_eq!(
            paths(&r),
            [
                "dob.date",
                "email",
                "gender",
                "location.city",
                "location.country",
                "location.postcode",
                "location.state",
                "location.street.name",
                "location.street.number",
                "login.username",
                "login.uuid",
                "name.first",
                "name.last",
                "phone",
                "picture.medium",
                "registered.date"
            ]
        );
        assert!(
            r.leaf("location.street.number") && !r.leaf("login.password") && !r.leaf("location.coordinates.latitude")
        );
    }

    #[tokio::test]
    async fn unread_leaves_are_null_and_every_field_is_still_checked() {
        use arrow::array::{Array, AsArray};
        let (all, some) = (RawDecoder::default(), {
            let read = reads(DEFAULT_SQL).await;
            RawDecoder::reading(move |p| read.leaf(p))
        });
        let uuid = "7e1f0c3a-2b4d-4c6e-8f10-a1b2c3d4e5f6";
        let good = format!(r#"{{"login":{{"uuid":"{uuid}","password":"p"}},"nat":"FR"}}"#);
        let bad = format!(r#"{{"login":{{"uuid":"{uuid}","password":{{"x":1}}}}}}"#);
        let inputs = [Some(good.as_bytes()), Some(bad.as_bytes())];
        let (full, projected) = (all.decode(&inputs).unwrap(), some.decode(&inputs).unwrap());
        assert_eq!(projected.rejected, full.rejected);
        assert!(projected.rejected[0].1.contains("login.password"), "{:?}", projected.rejected);
        let login = |d: &Decoded, leaf: &str| {
            let login = d.batch.column_by_name("login").unwrap().as_struct();
            let column = login.column_by_name(leaf).unwrap().as_string::<i32>().clone();
            column.is_valid(0).then(|| column.value(0).to_owned())
        };
        assert_eq!((login(&full, "uuid"), login(&full, "password")), (Some(uuid.into()), Some("p".into())));
        assert_eq!((login(&projected, "uuid"), login(&projected, "password")), (Some(uuid.into()), None));
        assert!(projected.batch.column_by_name("nat").unwrap().is_null(0));
        assert_eq!(projected.batch.schema(), full.batch.schema());
    }

    #[tokio::test]
    async fn a_column_named_whole_anywhere_is_read_whole() {
        for (sql, whole) in [
            ("SELECT login['uuid'] AS id, name FROM users_raw", "name.title"),
            ("SELECT s.id, s.picture FROM (SELECT login['uuid'] AS id, picture FROM users_raw) s", "picture.large"),
            ("SELECT login['uuid'] AS id FROM users_raw WHERE location IS NOT NULL", "location.timezone.offset"),
            ("SELECT login['uuid'] AS id FROM users_raw ORDER BY dob", "dob.age"),
            ("SELECT id FROM (SELECT login['uuid'] AS id, login FROM users_raw) WHERE login['md5'] > ''", "login.salt"),
            ("SELECT login['uuid'] AS id FROM users_raw WHERE gender IN (SELECT nat FROM users_raw)", "nat"),
            (
                "SELECT login['uuid'] AS id FROM users_raw u \
                 WHERE EXISTS (SELECT 1 FROM users_raw v WHERE v.gender = u.cell)",
                "cell",
            ),
            (
                "SELECT login['uuid'] AS id FROM users_raw u \
                 WHERE EXISTS (SELECT 1 FROM users_raw v WHERE v.gender = u.id['value'])",
                "id.value",
            ),
        ] {
            let r = reads(sql).await;
            assert!(r.leaf(whole), "{sql}: {r:?}");
            assert!(r.leaf("login.uuid"), "{sql}: {r:?}");
        }
        let r = reads("SELECT login['uuid'] AS id, location['street'] AS s FROM users_raw").await;
        assert_eq!(paths(&r), ["location.street", "login.uuid"]);
        assert!(r.leaf("location.street.name") && !r.leaf("location.city") && !r.leaf("login.md5"));
    }
}
