"""Domain errors of accounts, each with its HTTP status and stable code."""

from core.problems import DomainError


class UsernameTaken(DomainError):
    status_code = 409
    code = "username_taken"
    title = "Username taken"
    default_detail = "A user with this username already exists."

    def __init__(self) -> None:
        super().__init__(errors={"username": [self.default_detail]})


class UserIdTaken(DomainError):
    status_code = 409
    code = "user_id_taken"
    title = "User id taken"
    default_detail = "A user with this user_id already exists."

    def __init__(self) -> None:
        super().__init__(errors={"user_id": [self.default_detail]})
