<?php

namespace Resonance\Laravel\Sockets;

use Closure;
use Illuminate\Contracts\Container\Container;
use Illuminate\Cookie\Middleware\EncryptCookies;
use Illuminate\Http\Request;
use Illuminate\Http\Response;

/**
 * Resolves the Laravel user of a handler call from the browser's cookies that Resonance
 * forwards: the app's own EncryptCookies middleware decrypts them, the session is read (never
 * written: a handler call must not overwrite what the browser's own requests store), and the
 * app's guard answers. Token guards work the same way from the forwarded Authorization header.
 */
class SessionUser
{
    public static function resolver(Container $app, Request $request, ?string $guard): Closure
    {
        return static function () use ($app, $request, $guard) {
            self::loadSession($app, $request);

            return $app->make('auth')->guard($guard)->user();
        };
    }

    private static function loadSession(Container $app, Request $request): void
    {
        if ($request->hasSession() || ! $app->bound('session')) {
            return;
        }
        $encrypter = self::cookieMiddleware($app);
        if ($encrypter !== null) {
            // handle() decrypts $request's cookies in place; the dummy response has none to encrypt.
            $encrypter->handle($request, static function () {
                return new Response();
            });
        }
        $store = $app->make('session')->driver();
        if (method_exists($store, 'setRequestOnHandler')) {
            $store->setRequestOnHandler($request);
        }
        $id = $request->cookies->get($store->getName());
        $store->setId(is_string($id) ? $id : null);
        $store->start();
        $request->setLaravelSession($store);
    }

    private static function cookieMiddleware(Container $app): ?EncryptCookies
    {
        $class = config('resonance.sockets.encrypt_cookies');
        if (! $class) {
            $class = class_exists('App\\Http\\Middleware\\EncryptCookies') ? 'App\\Http\\Middleware\\EncryptCookies' : EncryptCookies::class;
        }
        $middleware = $app->make($class);

        return $middleware instanceof EncryptCookies ? $middleware : null;
    }
}
