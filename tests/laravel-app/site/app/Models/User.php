<?php

namespace App\Models;

use Illuminate\Contracts\Auth\Authenticatable;
use Illuminate\Notifications\Notifiable;

/**
 * A user from a fixed list (see USERS): the suite needs no database. It is
 * what Laravel's guards, channel callbacks and broadcast notifications see of
 * an Eloquent user: an auth identifier, a key, attributes and Notifiable.
 */
class User implements Authenticatable
{
    use Notifiable;

    /** password for everyone: "password" */
    public const PASSWORD_HASH = '$2y$10$MQm/vrZlyjqYEkMTe0rQF.1tXUu4eAAovXrJYxlbf/zd5I/homKpS';

    public const USERS = [
        1 => ['name' => 'Alice', 'email' => 'alice@example.com', 'admin' => true],
        2 => ['name' => 'Bob', 'email' => 'bob@example.com', 'admin' => false],
        3 => ['name' => 'Carol', 'email' => 'carol@example.com', 'admin' => false],
        4 => ['name' => 'Dave', 'email' => 'dave@example.com', 'admin' => false],
    ];

    public $id;
    public $name;
    public $email;
    public $admin;
    public $online = false;
    protected $rememberToken;

    public function __construct(int $id, array $attributes)
    {
        $this->id = $id;
        $this->name = $attributes['name'];
        $this->email = $attributes['email'];
        $this->admin = $attributes['admin'];
    }

    public static function find($id): ?self
    {
        $id = (int) $id;

        return isset(self::USERS[$id]) ? new self($id, self::USERS[$id]) : null;
    }

    public static function findByEmail(string $email): ?self
    {
        foreach (self::USERS as $id => $attributes) {
            if (strcasecmp($attributes['email'], $email) === 0) {
                return new self($id, $attributes);
            }
        }

        return null;
    }

    public function getKey()
    {
        return $this->id;
    }

    public function getAuthIdentifierName()
    {
        return 'id';
    }

    public function getAuthIdentifier()
    {
        return $this->id;
    }

    public function getAuthPassword()
    {
        return self::PASSWORD_HASH;
    }

    public function getRememberToken()
    {
        return $this->rememberToken;
    }

    public function setRememberToken($value)
    {
        $this->rememberToken = $value;
    }

    public function getRememberTokenName()
    {
        return 'remember_token';
    }

    public function toArray(): array
    {
        return ['id' => $this->id, 'name' => $this->name, 'email' => $this->email];
    }
}
