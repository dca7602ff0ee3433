"""Bearer-token authentication for the API."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings

from accounts.models import User

# Read on every authenticated request, needed by almost none: two of them are encrypted, so
# loading them cost a decryption each. A view that does need one reads it on access.
RARELY_NEEDED = ("password", "passport_number", "webhook_secret")


class BearerAuthentication(JWTAuthentication):
    """simplejwt's access tokens; the user row is read without its rarely needed columns."""

    def get_user(self, validated_token):
        if api_settings.CHECK_REVOKE_TOKEN:
            return super().get_user(validated_token)  # compares the password hash: read it all
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken("Token contained no recognizable user identification") from exc
        user = User.objects.defer(*RARELY_NEEDED).filter(**{api_settings.USER_ID_FIELD: user_id}).first()
        if user is None:
            raise AuthenticationFailed("User not found", code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        return user


class BearerAuthenticationScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of BearerAuthentication: simplejwt's, under the same name."""

    target_class = BearerAuthentication
