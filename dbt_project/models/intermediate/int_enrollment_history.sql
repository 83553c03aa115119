-- One row per student and stretch of unchanged enrollment: valid_from / valid_to across the
-- full roster snapshots. A student missing from a later snapshot has left (LEFT).
{{ snapshot_history(ref('stg_schools__enrollments'), ['person_id'],
                    ['school_code', 'grade_level', 'exit_date', 'zip5']) }}
