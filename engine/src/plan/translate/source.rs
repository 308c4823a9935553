//! Sources: one per table, reading the union of the columns every scan of
//! it needs, with what follows a source of changes (its normalisation by
//! key, or its final table in batch mode).

use super::*;

impl Translator<'_> {
    /// The source of `table`, reading `columns` (indices into its schema)
    /// and whatever its key and watermark need. When it `carries_rows`
    /// (a window reads it and the job keeps late rows), it reads every
    /// column and carries each row as read ([`crate::ops::late_row`]).
    pub(super) fn add_source(
        &mut self,
        table: &Arc<TableDef>,
        mut columns: BTreeSet<usize>,
        carries_rows: bool,
    ) -> Result<()> {
        let schema = &table.schema;
        crate::changelog::check_no_reserved_column(&table.name, schema)?;
        let source = self.registry.create_source(table, &self.context)?;
        let changes = source.changes();
        // Windows read insert-only rows only.
        let carries_rows = carries_rows && changes == SourceChanges::InsertOnly;
        if carries_rows {
            columns.extend(0..schema.fields().len());
        }
        if changes == SourceChanges::Upsert {
            if table.primary_key.is_empty() {
                return Err(SluiceError::plan(format!(
                    "{}: table `{}` is read as upserts, which needs a PRIMARY KEY (...) NOT ENFORCED",
                    table.declared_at, table.name
                )));
            }
            // Upserts are normalised by their key.
            columns.extend(table.primary_key.iter().copied());
        }
        // The rowtime column and whatever the watermark reads are always read.
        if let Some(wm) = &table.watermark {
            for c in wm
                .expr
                .column_refs()
                .into_iter()
                .chain([&Column::from_name(&wm.column)])
            {
                if let Ok(i) = schema.index_of(&c.name) {
                    columns.insert(i);
                }
            }
        }
        let projection: Vec<usize> = columns.into_iter().collect();
        let projected = Arc::new(
            schema
                .project(&projection)
                .map_err(|e| SluiceError::plan(format!("table `{}`: {e}", table.name)))?,
        );
        let watermark = match &table.watermark {
            Some(wm) => {
                let df_schema =
                    DFSchema::try_from_qualified_schema(table.name.as_str(), &projected)
                        .map_err(|e| SluiceError::plan(e.to_string()))?;
                Some(
                    create_physical_expr(
                        &wm.expr,
                        &df_schema,
                        &self.props,
                        &PhysicalPlanningContext::default(),
                    )
                    .map_err(|e| {
                        SluiceError::plan(format!(
                            "{}: WATERMARK FOR `{}`: {}",
                            table.declared_at,
                            wm.column,
                            crate::sql::df_message(&e)
                        ))
                    })?,
                )
            }
            None => None,
        };
        let (read, read_schema, mut compute) =
            self.source_columns(table, &projection, carries_rows)?;
        let schema = match changes {
            SourceChanges::InsertOnly if carries_rows => {
                let row = compute
                    .as_ref()
                    .and_then(|exprs| exprs.last())
                    .ok_or_else(|| SluiceError::plan("a source carrying rows computes none"))?;
                let field = arrow::datatypes::Field::new(
                    crate::ops::late_row::LATE_ROW,
                    row.data_type(&read_schema)
                        .map_err(|e| SluiceError::plan(crate::sql::df_message(&e)))?,
                    false,
                );
                let mut fields: Vec<_> = projected.fields().iter().cloned().collect();
                fields.push(Arc::new(field));
                Arc::new(Schema::new(fields))
            }
            SourceChanges::InsertOnly => projected,
            // The row kinds pass through the computed columns. A
            // tombstone's columns outside the key are null.
            SourceChanges::Retract | SourceChanges::Unordered | SourceChanges::Upsert => {
                let projected = match changes {
                    SourceChanges::Upsert => Arc::new(Schema::new(
                        projection
                            .iter()
                            .zip(projected.fields())
                            .map(|(c, f)| {
                                let in_key = table.primary_key.contains(c);
                                f.as_ref().clone().with_nullable(f.is_nullable() || !in_key)
                            })
                            .collect::<Vec<_>>(),
                    )),
                    _ => projected,
                };
                if let Some(exprs) = &mut compute {
                    exprs.push(Arc::new(
                        datafusion::physical_expr::expressions::Column::new(
                            crate::changelog::ROW_KIND,
                            read.len(),
                        ),
                    ));
                }
                crate::changelog::with_row_kind(&projected)
            }
        };
        let id = self.add_node(
            NodeKind::Source(SourceNode {
                table: Arc::clone(table),
                source,
                projection: read,
                read_schema,
                compute,
                watermark,
            }),
            self.parallelism,
            schema,
        );
        let id = self.normalize_changes(table, id, changes, &projection)?;
        self.sources.insert(table.name.clone(), (id, projection));
        Ok(())
    }

    /// What follows a source of changes. In stream mode a retract
    /// changelog goes on as it is, and upserts are normalised by key into
    /// one ([`UpsertNormalize`]). In batch mode both become the final
    /// table, sent as inserts once the input ended: the last value of
    /// each key, or every row the changelog left standing
    /// ([`ChangelogMaterialize`]), so batch operators never see a
    /// retraction and the answer does not depend on the order in which
    /// files or partitions were read. A changelog in no order (files) is
    /// read as its table in stream mode too.
    fn normalize_changes(
        &mut self,
        table: &TableDef,
        source: NodeId,
        changes: SourceChanges,
        projection: &[usize],
    ) -> Result<NodeId> {
        let batch = self.context.mode == crate::sql::Mode::Batch;
        let schema = Arc::clone(&self.graph.node(source).schema);
        let data = crate::changelog::without_row_kind(&schema);
        let columns = |schema: &Schema, indices: &[usize]| -> Vec<Arc<dyn PhysicalExpr>> {
            indices
                .iter()
                .map(|&c| {
                    Arc::new(datafusion::physical_expr::expressions::Column::new(
                        schema.field(c).name(),
                        c,
                    )) as Arc<dyn PhysicalExpr>
                })
                .collect()
        };
        match changes {
            SourceChanges::InsertOnly => Ok(source),
            SourceChanges::Retract if !batch => Ok(source),
            SourceChanges::Retract | SourceChanges::Unordered => {
                let op = ChangelogMaterialize::new(&table.name, Arc::clone(&data));
                let all: Vec<usize> = (0..data.fields().len()).collect();
                let keys = columns(&data, &all);
                Ok(self.add_operator(
                    source,
                    Arc::new(op),
                    data,
                    Partitioning::Hash(keys),
                    self.parallelism,
                ))
            }
            SourceChanges::Upsert => {
                let key: Vec<usize> = table
                    .primary_key
                    .iter()
                    .map(|k| {
                        projection.iter().position(|c| c == k).ok_or_else(|| {
                            SluiceError::plan(format!(
                                "table `{}`: the source does not read its key column {k}",
                                table.name
                            ))
                        })
                    })
                    .collect::<Result<_>>()?;
                let keys = columns(&data, &key);
                let op = UpsertNormalize::new(Arc::clone(&data), key, batch, self.state_ttl);
                let output = match batch {
                    true => data,
                    false => schema,
                };
                Ok(self.add_operator(
                    source,
                    Arc::new(op),
                    output,
                    Partitioning::Hash(keys),
                    self.parallelism,
                ))
            }
        }
    }

    /// The physical columns to read for the table's columns `projection`,
    /// their schema, and (when some are computed, or the source
    /// `carries_rows`) the expressions that make the projected columns
    /// from them, the row as read last.
    #[allow(clippy::type_complexity)]
    fn source_columns(
        &self,
        table: &TableDef,
        projection: &[usize],
        carries_rows: bool,
    ) -> Result<(Vec<usize>, SchemaRef, Option<Vec<Arc<dyn PhysicalExpr>>>)> {
        let fail = |e: &dyn std::fmt::Display| {
            SluiceError::plan(format!(
                "{}: table `{}`: {e}",
                table.declared_at, table.name
            ))
        };
        if table.computed.is_empty() && !carries_rows {
            let schema = table.physical.project(projection).map_err(|e| fail(&e))?;
            return Ok((projection.to_vec(), Arc::new(schema), None));
        }
        let computed = |i: usize| table.computed.iter().find(|(c, _)| *c == i).map(|c| &c.1);
        let mut read = BTreeSet::new();
        for &i in projection {
            let names: Vec<String> = match computed(i) {
                Some(expr) => expr
                    .column_refs()
                    .into_iter()
                    .map(|c| c.name.clone())
                    .collect(),
                None => vec![table.schema.field(i).name().clone()],
            };
            for name in names {
                read.insert(table.physical.index_of(&name).map_err(|e| fail(&e))?);
            }
        }
        let read: Vec<usize> = read.into_iter().collect();
        let read_schema = Arc::new(table.physical.project(&read).map_err(|e| fail(&e))?);
        let df_schema = DFSchema::try_from_qualified_schema(table.name.as_str(), &read_schema)
            .map_err(|e| fail(&e))?;
        let column = |name: &str| Expr::Column(Column::new(Some(table.name.as_str()), name));
        let row = carries_rows.then(|| {
            datafusion::functions::core::expr_fn::named_struct(
                read_schema
                    .fields()
                    .iter()
                    .flat_map(|f| {
                        [
                            datafusion::prelude::lit(f.name().as_str()),
                            column(f.name()),
                        ]
                    })
                    .collect(),
            )
        });
        let exprs = projection
            .iter()
            .map(|&i| match computed(i) {
                Some(expr) => expr.clone(),
                None => column(table.schema.field(i).name()),
            })
            .chain(row)
            .map(|expr| {
                create_physical_expr(
                    &expr,
                    &df_schema,
                    &self.props,
                    &PhysicalPlanningContext::default(),
                )
                .map_err(|e| fail(&crate::sql::df_message(&e)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((read, read_schema, Some(exprs)))
    }
}
