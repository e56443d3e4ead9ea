"""Operations: the checks of `manage.py doctor` (`checks`), the steps of `manage.py smoke` (`smoke`) and
beat's heartbeat (`beat`)."""
