"""Accounts API: register, JWT tokens (obtain, refresh, logout), own profile, users scoped by role."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.api.serializers import (
    LogoutIn,
    MeOut,
    MeUpdateIn,
    RegisteredOut,
    RegisterIn,
    TokenPairOut,
    TokenRefreshIn,
    UserOut,
)
from accounts.models import USER_ID_IN_PATH, User
from accounts.selectors import user_get_for, user_list_for
from accounts.services import (
    refresh_token_revoke,
    refresh_token_rotate,
    user_register,
    user_settings_update,
)
from core.problems import PROBLEM_CONTENT_TYPE
from core.schema import VALIDATION_EXAMPLE, list_retrieve_schema, problems
from core.throttling import AUTH_THROTTLES, LOGIN_THROTTLES

USER_EXAMPLE = {
    "user_id": "usr-001",
    "full_name": "Aziz Karimov",
    "phone_number": "+998****4567",
    "passport_number": "AA*******",
    "card_number": "4111 **** **** 1111",
    "status": "NORMAL",
    "role": "CUSTOMER",
    "created_at": "2026-11-22T10:00:00Z",
}
ME_EXAMPLE = USER_EXAMPLE | {
    "username": "usr-001",
    "email": "usr-001@example.com",
    "credit_limit": "10000.00",
    "card_brand": "visa",
    "autopay": True,
    "credit_balance": {"USD": "5.00"},
    "webhook_url": "",
    "fee_percent": None,
    "fee_fixed": None,
    "payout_account": "",
    "payout_account_kind": "",
    "payout_account_name": "",
}

MERCHANT_ME_EXAMPLE = ME_EXAMPLE | {
    "user_id": "merchant-001",
    "username": "merchant-001",
    "full_name": "Demo Shop",
    "email": "merchant-001@example.com",
    "passport_number": "",
    "card_number": "",
    "role": "MERCHANT",
    "card_brand": "",
    "credit_balance": {},
    "webhook_url": "https://shop.example.com/bnpl/events",
    "fee_percent": "4.00",
    "fee_fixed": "0.30",
    "payout_account": "DE89**************3000",
    "payout_account_kind": "IBAN",
    "payout_account_name": "Demo Shop",
}


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = AUTH_THROTTLES

    @extend_schema(
        operation_id="auth_register",
        summary="Register a customer or merchant",
        request=RegisterIn,
        responses={201: RegisteredOut, **problems(400, 409, 413, 415)},
        examples=[
            OpenApiExample(
                "Customer",
                value={
                    "username": "aziz",
                    "password": "s3cure-pass-phrase",  # an OpenAPI example, not a credential  # nosec B105
                    "role": "CUSTOMER",
                    "full_name": "Aziz Karimov",
                    "phone_number": "+998901234567",
                    "email": "aziz@example.com",
                    "passport_number": "AA1234567",
                    "card_number": "4111111111111111",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Registered",
                value=ME_EXAMPLE | {"webhook_secret": None},  # an OpenAPI example, not a credential  # nosec B105
                response_only=True,
                status_codes=["201"],
            ),
            VALIDATION_EXAMPLE,
        ],
    )
    def post(self, request: Request) -> Response:
        body = RegisterIn(data=request.data)
        body.is_valid(raise_exception=True)
        user = user_register(**body.validated_data)
        return Response(RegisteredOut(user).data, status=201)


TOKEN_PAIR_EXAMPLE = OpenApiExample(
    "Token pair", value={"access": "eyJhbGciOiJIUzI1NiIs…", "refresh": "eyJhbGciOiJIUzI1NiIs…"}, response_only=True
)
REFRESH_EXAMPLE = OpenApiExample("Refresh", value={"refresh": "eyJhbGciOiJIUzI1NiIs…"}, request_only=True)
TOKEN_NOT_VALID_EXAMPLE = OpenApiExample(
    "Token spent or revoked",
    value={
        "type": "/problems/token_not_valid",
        "title": "Unauthorized",
        "status": 401,
        "detail": "Token is blacklisted",
        "code": "token_not_valid",
    },
    status_codes=["401"],
    response_only=True,
    media_type=PROBLEM_CONTENT_TYPE,  # examples attach to the answer of their media type only
)


class CredentialView(APIView):
    """An endpoint whose credential is in its body: anyone may call it, a bearer token sent
    along is not read, and each client address is limited on it (the ``auth`` scope)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = AUTH_THROTTLES

    def get_authenticate_header(self, request: Request) -> str:
        # A 401 says how to authenticate (RFC 9110), as simplejwt's token views say it; DRF
        # would otherwise turn a 401 from a view without authenticators into a 403.
        return f'{jwt_settings.AUTH_HEADER_TYPES[0]} realm="api"'


@extend_schema_view(
    post=extend_schema(
        operation_id="auth_token",
        summary="Obtain a JWT access/refresh pair",
        responses={200: TokenPairOut, **problems(400, 401, 413, 415)},
        examples=[
            OpenApiExample(
                "Credentials",
                value={"username": "usr-001", "password": "demo12345"},  # the demo user's, documented  # nosec B105
                request_only=True,
            ),
            TOKEN_PAIR_EXAMPLE,
        ],
    )
)
class TokenObtainView(jwt_views.TokenObtainPairView):
    authentication_classes: list = []
    throttle_classes = LOGIN_THROTTLES


def _spending_token(service, **kwargs):
    """``service(**kwargs)``, a refresh token it cannot use answered as the API's 401
    ``token_not_valid`` (simplejwt's InvalidToken) rather than its bare TokenError."""
    try:
        return service(**kwargs)
    except TokenError as exc:
        raise InvalidToken(exc.args[0]) from exc


class TokenRefreshView(CredentialView):
    @extend_schema(
        operation_id="auth_token_refresh",
        summary="Exchange a refresh token for a new pair",
        description=(
            "Spends the refresh token: the answer is a new access token and a new refresh token, and "
            "the one sent is revoked. Keep the new one: the old one, sent again (even at the same "
            "moment), is refused with 401 `token_not_valid`, as is a revoked (logged out) or expired "
            "one. 401 `no_active_account`: the token's user is deactivated or deleted."
        ),
        request=TokenRefreshIn,
        responses={200: TokenPairOut, **problems(400, 401, 413, 415)},
        examples=[REFRESH_EXAMPLE, TOKEN_PAIR_EXAMPLE, TOKEN_NOT_VALID_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        body = TokenRefreshIn(data=request.data)
        body.is_valid(raise_exception=True)
        pair = _spending_token(refresh_token_rotate, **body.validated_data)
        return Response(TokenPairOut(pair).data)


class LogoutView(CredentialView):
    """The refresh token is the credential, as for a refresh: whoever holds it may already use
    it, so may also revoke it. No access token is needed (it may have expired by then), and
    none is read: a bearer token of another user sent along changes nothing."""

    @extend_schema(
        operation_id="auth_logout",
        summary="Log out: revoke a refresh token",
        description=(
            "Revokes the refresh token sent: it can no longer be refreshed (nor revoked again). "
            "Answers 204. Access tokens already issued stay valid until they expire (minutes): "
            "drop them too. 401 `token_not_valid`: the token is malformed, expired, or already "
            "spent or revoked, so it is of no use to anyone either: a client retrying a logout "
            "whose answer it lost may take that 401 as done."
        ),
        request=LogoutIn,
        responses={204: None, **problems(400, 401, 413, 415)},
        examples=[REFRESH_EXAMPLE, TOKEN_NOT_VALID_EXAMPLE, VALIDATION_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        body = LogoutIn(data=request.data)
        body.is_valid(raise_exception=True)
        _spending_token(refresh_token_revoke, **body.validated_data)
        return Response(status=204)


class MeView(APIView):
    @extend_schema(
        operation_id="auth_me",
        summary="Your own profile (masked)",
        responses={200: MeOut, **problems(401)},
        examples=[
            OpenApiExample("Me", value=ME_EXAMPLE, response_only=True),
            OpenApiExample("A merchant, with its pricing", value=MERCHANT_ME_EXAMPLE, response_only=True),
        ],
    )
    def get(self, request: Request) -> Response:
        return Response(MeOut(request.user).data)

    @extend_schema(
        operation_id="auth_me_update",
        summary="Change your settings: autopay (customers), webhook URL and payout account (merchants)",
        description=(
            "Only the fields sent change. A merchant's payout account is an IBAN (checked: a country "
            "that issues IBANs, its length, the ISO 13616 check digits; spaces allowed, any case) or a "
            "plain account number (6 to 34 digits), given with the account holder's name unless one is "
            "on file; blank `payout_account` removes it. It is stored encrypted and answered masked "
            "(first 4, last 4). A field of another role is a 400 naming it."
        ),
        request=MeUpdateIn,
        responses={200: MeOut, **problems(400, 401, 413, 415)},
        examples=[
            OpenApiExample("Autopay off", value={"autopay": False}, request_only=True),
            OpenApiExample(
                "Webhook URL", value={"webhook_url": "https://shop.example.com/bnpl/events"}, request_only=True
            ),
            OpenApiExample(
                "Payout account",
                value={"payout_account": "DE89 3704 0044 0532 0130 00", "payout_account_name": "Example Shop LLC"},
                request_only=True,
            ),
            OpenApiExample("Merchant", value=MERCHANT_ME_EXAMPLE, response_only=True, status_codes=["200"]),
            VALIDATION_EXAMPLE,
            OpenApiExample(
                "Invalid IBAN",
                value={
                    "type": "/problems/validation_error",
                    "title": "Invalid request",
                    "status": 400,
                    "detail": "Invalid input: payout_account.",
                    "code": "validation_error",
                    "errors": {
                        "payout_account": [
                            "The IBAN's check digits do not match the rest of it (ISO 13616 mod 97): check it "
                            "for a typo."
                        ]
                    },
                },
                status_codes=["400"],
                response_only=True,
                media_type=PROBLEM_CONTENT_TYPE,
            ),
        ],
    )
    def patch(self, request: Request) -> Response:
        body = MeUpdateIn(data=request.data, context={"user": request.user})
        body.is_valid(raise_exception=True)
        user = user_settings_update(user=request.user, **body.validated_data)
        return Response(MeOut(user).data)


class UserFilter(filters.FilterSet):
    role = filters.ChoiceFilter(choices=User.Role.choices)
    status = filters.ChoiceFilter(choices=User.Status.choices)

    class Meta:
        model = User
        fields = ["role", "status"]


@list_retrieve_schema(name="users", plural="Users (masked)", serializer=UserOut, example=USER_EXAMPLE)
class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Customers see themselves, merchants their customers, operators everyone; else 404."""

    serializer_class = UserOut
    filterset_class = UserFilter
    lookup_field = "user_id"
    lookup_value_regex = USER_ID_IN_PATH

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return User.objects.none()
        return user_list_for(viewer=self.request.user)

    def get_object(self) -> User:
        return user_get_for(viewer=self.request.user, user_id=self.kwargs["user_id"])
