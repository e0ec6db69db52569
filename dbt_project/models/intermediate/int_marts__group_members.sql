{{ config(unique_key='group_member_id', meta={'indexes': [{'columns': ['group_id']}]}) }}
{# The members of groups whose app district is linked to a configured district: the
   stored part of fct_group_members, rebuilt per district (macro group_members_rows). #}
{{ group_members_rows(remainder=false) }}
