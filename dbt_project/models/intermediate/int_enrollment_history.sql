-- One row per student record (person and StudentID) and stretch of unchanged enrollment:
-- valid_from / valid_to across the full roster snapshots. A student missing from a later
-- snapshot has left (LEFT); a new grade, school, exit date or support plan is a new stretch.
{{ snapshot_history(ref('stg_schools__enrollments'), ['person_id', 'student_key'],
                    ['school_code', 'grade_level', 'entry_date', 'exit_date', 'iep',
                     'section_504', 'zip5']) }}
