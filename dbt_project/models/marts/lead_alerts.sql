-- One row per alert: a child, a rule and an episode (the screening or confirming test it
-- started from), as the data known on the as-of date says. An alert opens the day after its
-- due date and closes at the first of: the missing step recorded, a newer episode superseding
-- it, or closing feedback from the agency it is assigned to. alert_id is stable for the same
-- child, rule and episode, so a list, its feedback and the next list all name the same alert.
with unioned as (
    select * from {{ ref('int_alerts__confirmatory_test_overdue') }}
    union all by name
    select * from {{ ref('int_alerts__environmental_investigation_overdue') }}
    union all by name
    select * from {{ ref('int_alerts__case_management_overdue') }}
),

alerts as (
    select
        substr(md5(u.person_id || '|' || u.rule_code || '|' || cast(u.episode_date as varchar)),
               1, 16) as alert_id,
        u.*,
        r.assigned_agency,
        r.next_step
    from unioned as u
    inner join {{ ref('alert_rules') }} as r on r.rule_code = u.rule_code
    where u.became_alert
),

feedback as (
    -- only the assigned agency's feedback, as delivered by the as-of date
    select f.*
    from {{ ref('stg_feedback__alert_feedback') }} as f
    inner join alerts as a on a.alert_id = f.alert_id and a.assigned_agency = f.agency
    where f.extract_date <= {{ as_of_date() }} and f.recorded_date <= {{ as_of_date() }}
),

feedback_summary as (
    select
        alert_id,
        min(recorded_date) filter (
            where feedback_status in ('RESOLVED', 'NOT_APPLICABLE', 'WRONG_PERSON')
        ) as feedback_closed_on,
        arg_min(feedback_status, recorded_at) filter (
            where feedback_status in ('RESOLVED', 'NOT_APPLICABLE', 'WRONG_PERSON')
        ) as feedback_closing_status,
        count(*) filter (
            where feedback_status in ('IN_PROGRESS', 'UNABLE_TO_CONTACT')
        ) as contact_attempts,
        arg_max(feedback_status, recorded_at) as last_feedback_status
    from feedback
    group by alert_id
),

lifecycle as (
    select
        a.*,
        f.feedback_closed_on,
        f.feedback_closing_status,
        coalesce(f.contact_attempts, 0) as contact_attempts,
        f.last_feedback_status,
        a.due_date + 1 as opened_on,
        least(a.step_date, a.superseded_on, f.feedback_closed_on) as closed_on
    from alerts as a
    left join feedback_summary as f on f.alert_id = a.alert_id
),

closed as (
    select
        *,
        case
            when closed_on is null then null
            when closed_on = step_date then 'STEP_RECORDED'
            when closed_on = feedback_closed_on then 'FEEDBACK_' || feedback_closing_status
            else 'SUPERSEDED'
        end as close_reason
    from lifecycle
)

select
    alert_id,
    person_id,
    rule_code,
    assigned_agency,
    band,
    due_date,
    date_diff('day', due_date, coalesce(closed_on, {{ as_of_date() }})) as days_overdue,
    case when closed_on is null then 'OPEN' else 'CLOSED' end as status,
    reason_open || case close_reason
        when 'STEP_RECORDED' then ' Closed: ' || reason_step || ', after the due date.'
        when 'SUPERSEDED' then ' Closed: a newer test on ' || superseded_on
            || ' started a new episode.'
        when 'FEEDBACK_RESOLVED' then ' Closed: the agency reported it resolved on '
            || feedback_closed_on || '.'
        when 'FEEDBACK_NOT_APPLICABLE' then ' Closed: the agency reported it not applicable on '
            || feedback_closed_on || '.'
        when 'FEEDBACK_WRONG_PERSON' then ' Withdrawn: the agency reported on '
            || feedback_closed_on || ' that these records are not one child.'
        else ''
    end as reason,
    next_step,
    -- lifecycle
    episode_date,
    opened_on,
    closed_on,
    close_reason,
    step_date,
    contact_attempts,
    last_feedback_status,
    -- the rule as applied
    window_days,
    rule_version,
    -- evidence for the agency's list (pseudonymous; the outbox re-identifies from the vault)
    evidence_test_key,
    address_key,
    zip5,
    result_value,
    {{ as_of_date() }} as as_of_date
from closed
