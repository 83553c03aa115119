-- One row per assisted-housing household member and stretch of unchanged roster entry:
-- valid_from / valid_to across the full roster snapshots, so "moved" (CHANGED) and "left"
-- (LEFT: gone from a later snapshot) are visible and the roster can be read as of any date.
{{ snapshot_history(ref('stg_housing__residents'), ['household_key', 'person_id'],
                    ['relationship', 'address_key', 'building_key', 'zip5', 'move_out_date']) }}
