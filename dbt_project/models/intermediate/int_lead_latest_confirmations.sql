-- One row per child with a confirmed EBLL: the latest confirmation, which the housing and
-- case-management rules act on.
select *
from {{ ref('int_lead_confirmations') }}
qualify row_number() over (
    partition by person_id order by confirmation_date desc, result_value desc, confirming_test_key
) = 1
