from sandbox.contextdata import AuthToken, ContextDataProvider, Language, UserAgent, UserId
from sandbox.testing.services import dummy, entrypoint_hook


class Service:
    name = "ctx"
    language = Language()
    user_id = UserId()
    user_agent = UserAgent()
    auth_token = AuthToken()
    tenant = ContextDataProvider("tenant")

    @dummy
    def show(self):
        return [self.language, self.user_id, self.user_agent, self.auth_token, self.tenant]


def test_providers_read_context_data(container_factory):
    container = container_factory(Service, {})
    container.start()
    data = {
        "language": "en-gb",
        "user_id": 42,
        "user_agent": "ua",
        "auth_token": "t0k",
        "tenant": "acme",
    }
    with entrypoint_hook(container, "show", context_data=data) as show:
        assert show() == ["en-gb", 42, "ua", "t0k", "acme"]
    with entrypoint_hook(container, "show") as show:
        assert show() == [None] * 5
