-- One row per rule and band: the window in force on the as-of date (the latest rule version
-- effective by then), so a city can change a window by adding a seed row.
select rule_code, band, window_days, rule_version
from {{ ref('rule_windows') }}
where effective_from <= {{ as_of_date() }}
qualify row_number() over (partition by rule_code, band order by effective_from desc) = 1
