// modemgw webhook for Zabbix 6.0+: sends an alert as an SMS through a modemgw gateway's JSON API
// (POST /api/v1/messages with a bearer key). The same script is the script of modemgw_media_type.yaml; keep the
// two identical (tests/test_contrib.py checks). ES5 only: Zabbix runs webhooks in Duktape.
//
// Parameters (the media type's): url (the gateway, e.g. https://sms.example.lan), api_key (a key with the send
// scope), to ({ALERT.SENDTO}: one number or several, comma-separated), subject ({ALERT.SUBJECT}), message
// ({ALERT.MESSAGE}), and optionally priority ({EVENT.NSEVERITY} by default: a disaster goes before a warning),
// modem (send from this modem label or group), event_id ({EVENT.ID}: the messages' client_ref is zabbix-<id>),
// HTTPProxy.
var Modemgw = {
    // The SMS: the subject and the message on two lines; one of them when the other is empty, or when the message
    // already starts with the subject.
    text: function (subject, message) {
        subject = (subject || '').trim();
        message = (message || '').trim();
        if (!subject || message.indexOf(subject) === 0) {
            return message;
        }
        return message ? subject + '\n' + message : subject;
    },

    // A macro Zabbix left as it was (a test from the media type's page fills none): treated as not given.
    given: function (value) {
        return typeof value === 'string' && value.trim() !== '' && !/^\{[A-Z0-9_.$]+\}$/.test(value.trim());
    },

    recipients: function (sendto) {
        return sendto.split(/[,;\s]+/).filter(function (number) {
            return number !== '';
        });
    },

    // The problem's detail from an answer that is not 202 (problem+json), else the answer itself, shortened.
    reason: function (status, response) {
        var detail = response;
        try {
            detail = JSON.parse(response).detail || response;
        }
        catch (error) {
            // not JSON (a proxy's page): shown as it is
        }
        return 'the gateway answered ' + status + ': ' + String(detail).substring(0, 300);
    },

    send: function (params) {
        var request = new HttpRequest(),
            url = params.url.trim().replace(/\/+$/, '') + '/api/v1/messages',
            body = {to: Modemgw.recipients(params.to), body: Modemgw.text(params.subject, params.message)},
            response, status, answer, ids = [], skipped = [];

        if (!body.body) {
            throw 'the subject and the message are both empty: nothing to send';
        }
        if (Modemgw.given(params.priority) && /^-?\d+$/.test(params.priority.trim())) {
            body.priority = Math.max(-100, Math.min(100, parseInt(params.priority, 10)));
        }
        if (Modemgw.given(params.modem)) {
            body.modem = params.modem.trim();
        }
        if (Modemgw.given(params.event_id) && /^\d+$/.test(params.event_id.trim())) {
            body.client_ref = 'zabbix-' + params.event_id.trim();
        }
        request.addHeader('Content-Type: application/json');
        request.addHeader('Authorization: Bearer ' + params.api_key.trim());
        if (Modemgw.given(params.HTTPProxy)) {
            request.setProxy(params.HTTPProxy.trim());
        }
        Zabbix.log(4, '[ modemgw webhook ] sending to ' + body.to.join(', ') + ': ' + body.body);
        response = request.post(url, JSON.stringify(body));
        status = request.getStatus();
        Zabbix.log(4, '[ modemgw webhook ] answer ' + status + ': ' + response);
        if (status !== 202) {
            throw Modemgw.reason(status, response);
        }
        answer = JSON.parse(response);
        answer.messages.forEach(function (message) {
            ids.push(message.id);
        });
        answer.skipped.forEach(function (item) {
            skipped.push(item.to + ' (' + item.reason + ')');
        });
        if (ids.length === 0) {
            throw 'no message was queued: ' + skipped.join(', ');
        }
        return 'queued: message ' + ids.join(', ') + (skipped.length ? '; skipped ' + skipped.join(', ') : '');
    }
};

try {
    var params = JSON.parse(value);

    ['url', 'api_key', 'to'].forEach(function (name) {
        if (!Modemgw.given(params[name]) || /^<.*>$/.test(params[name].trim())) {
            throw 'the parameter "' + name + '" is not set' + (name === 'to'
                ? ' (the user\'s media "Send to": a phone number)' : ' (in the media type)');
        }
    });
    if (Modemgw.recipients(params.to).length === 0) {
        throw 'the parameter "to" holds no number';
    }
    return Modemgw.send(params);
}
catch (error) {
    Zabbix.log(3, '[ modemgw webhook ] sending failed: ' + error);
    throw 'Sending failed: ' + error;
}
