-- One row per month and ZIP (and the city, zip5 = ALL): children tested, elevated, confirmed,
-- and follow-up steps due and done in time with their shares. Suppressed for publication: no
-- count from 1 to 10 can be read or worked out (macros/suppression.sql).
{%- set pairs = followup_pairs() %}
{%- set measures = ['children_tested', 'children_elevated', 'children_confirmed']
                   + followup_pair_columns(pairs) %}

with published as (
    {{ suppressed_cells(ref('int_policy_facts_by_zip'), ['month'], 'zip5', measures, pairs) }}
)

select * from published
order by month, zip5
