#!/bin/sh
# certbot: the compose stack's optional certificate renewer (`docker-compose --profile certbot
# up -d certbot`, with SERVER_NAME and CERTBOT_EMAIL in .env). Gets a Let's Encrypt certificate
# for SERVER_NAME through the gateway's ACME webroot once, then tries a renewal twice a day.
# Each new certificate is installed into the "certs" volume, key first, each file renamed into
# place; the gateway notices the changed files and reloads them (a key that does not match the
# certificate yet is refused and the old pair kept until both have changed).
#   certbot.sh          obtain if needed, then renew in a loop
#   certbot.sh install  install the certificate of /etc/letsencrypt/live/$SERVER_NAME
set -eu
live=/etc/letsencrypt/live/${SERVER_NAME:?set SERVER_NAME}
certs=/etc/suite/certs
hook="sh $0 install"

if [ "${1:-}" = install ]; then
    umask 077
    cp -L "$live/privkey.pem" "$certs/server.key.new"
    chown 10001 "$certs/server.key.new"   # the gateway's user
    mv "$certs/server.key.new" "$certs/server.key"
    cp -L "$live/fullchain.pem" "$certs/server.crt.new"
    chmod 0644 "$certs/server.crt.new"
    mv "$certs/server.crt.new" "$certs/server.crt"
    echo "certbot: installed the certificate of $SERVER_NAME"
    exit 0
fi

certbot certonly --webroot -w /var/www/acme -d "$SERVER_NAME" --agree-tos -n \
    --keep-until-expiring ${CERTBOT_EMAIL:+--email "$CERTBOT_EMAIL"} \
    ${CERTBOT_EMAIL:---register-unsafely-without-email} --deploy-hook "$hook"
trap exit TERM
while :; do
    sleep 12h & wait $!
    certbot renew --webroot -w /var/www/acme --deploy-hook "$hook"
done
