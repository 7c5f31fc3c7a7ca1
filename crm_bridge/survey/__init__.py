"""The post-call satisfaction survey (满意度评价): once the agent hangs up, or transfers the
customer to ``*8``, the customer's own channel asks for a key 1-5 and the score rides on the
call (``calls.survey_score``); on or off per queue (``queue_settings.survey``), its prompts
the defaults shipped here or uploads (``domain``, ``prompts``, ``service``, ``routes``)."""
