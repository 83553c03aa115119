-- One row per rule and band: the window in force on the as-of date (the latest rule version
-- effective by then), so a city can change a window by adding a seed row.
select rule_code, band, window_days, rule_version
from (
    {% call keep_first('rule_code, band', 'effective_from desc') %}
    select rule_code, band, window_days, rule_version, effective_from
    from {{ ref('rule_windows') }}
    where effective_from <= {{ as_of_date() }}
    {% endcall %}
) as w
