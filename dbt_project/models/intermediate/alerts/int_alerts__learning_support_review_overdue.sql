-- One row per confirmed EBLL of a child who was on the school roster in a grade the rule
-- covers with no IEP and no 504 plan: an episode of rule 4 of lead-followup.md. Its step is a
-- later roster showing an IEP or a 504 plan; the child leaving the roster (or the covered
-- grades, or the roster row that was chosen) ends it. Due 30 days (a seed row per band) after
-- the later of the confirmation and the school entry date.
with confirmations as (
    select * from {{ ref('int_lead_confirmations') }}
),

grades as (
    select code as grade_level
    from {{ ref('qualifying_steps') }}
    where rule_code = 'LEARNING_SUPPORT_REVIEW_OVERDUE' and code_type = 'eligible_grade'
),

stretches as (
    select
        *,
        grade_level in (select grade_level from grades)
            and not coalesce(iep, false) and not coalesce(section_504, false) as qualifies,
        coalesce(iep, false) or coalesce(section_504, false) as has_plan
    from {{ ref('int_enrollment_history') }}
),

-- the child's row on the newest roster, still enrolled on the as-of date; on several rows,
-- the latest entry date
enrolled_now as (
    {% call keep_first('person_id', 'entry_date desc nulls last, student_key') %}
    select *
    from stretches
    where is_current and (exit_date is null or exit_date > {{ as_of_date() }})
    {% endcall %}
),

-- the stretch the episode is about: the chosen row today if it qualifies, else the child's
-- latest qualifying stretch
anchor as (
    {% call keep_first('person_id', 'is_chosen_row desc nulls last, valid_from desc, '
                       'entry_date desc nulls last, student_key') %}
    select s.*, n.student_key = s.student_key and n.valid_from = s.valid_from as is_chosen_row
    from stretches as s
    left join enrolled_now as n on n.person_id = s.person_id
    where s.qualifies
    {% endcall %}
),

ends as (
    select
        a.person_id,
        a.student_key,
        a.entry_date,
        (
            select min(p.valid_from) from stretches as p
            where p.person_id = a.person_id and p.has_plan and p.valid_from > a.valid_from
        ) as plan_date,
        case
            when a.exit_date is not null and a.exit_date <= {{ as_of_date() }} then a.exit_date
            when a.valid_to is not null then a.valid_to
            when n.student_key <> a.student_key then n.valid_from
        end as ended_on
    from anchor as a
    left join enrolled_now as n on n.person_id = a.person_id
),

-- a plan on a later roster is the step taken; only an end without one is leaving
episode_frame as (
    select
        *,
        case when plan_date is null or plan_date > ended_on then ended_on end as left_on
    from ends
),

windows as (
    select * from {{ ref('int_rule_windows') }}
    where rule_code = 'LEARNING_SUPPORT_REVIEW_OVERDUE'
),

episodes as (
    select
        c.person_id,
        c.confirmation_date as episode_date,
        c.band,
        w.window_days,
        w.rule_version,
        greatest(c.confirmation_date, coalesce(e.entry_date, c.confirmation_date))
            + w.window_days as due_date,
        c.confirming_test_key as evidence_test_key,
        c.confirming_test_uid as evidence_test_uid,
        e.student_key as evidence_student_key,
        c.address_key,
        c.zip5,
        c.result_value,
        c.sample_type_label,
        -- a newer confirmation, or the child leaving the covered roster, ends the episode
        case
            when e.left_on is null then c.next_confirmation_date
            when c.next_confirmation_date is null then e.left_on
            else least(c.next_confirmation_date, e.left_on)
        end as superseded_on,
        case
            when e.left_on is not null
                and (c.next_confirmation_date is null or e.left_on < c.next_confirmation_date)
                then 'the child left the school roster (or the grades this rule covers) on '
                    || e.left_on
        end as reason_superseded,
        e.plan_date as step_date
    from confirmations as c
    inner join episode_frame as e on e.person_id = c.person_id
    inner join windows as w on w.band = c.band
)

select
    'LEARNING_SUPPORT_REVIEW_OVERDUE' as rule_code,
    *,
    'The health department recorded a confirmed elevated blood lead level (band ' || band
    || ', ' || cast(year(episode_date) as string)
    || '). Lead can affect learning years later; no IEP or 504 plan is on the roster, and '
    || 'a learning-support review is due within ' || window_days
    || ' days of the confirmation or school entry.' as reason_open,
    'an IEP or 504 plan appeared on the roster on ' || step_date as reason_step,
    {{ rule_outcome_columns() }}
from episodes
